// Dashboard: rates over time, in flight, lag, errors, and the groups at a glance.
import { ago, api, badge, card, groupHref, h, liveArea, lineChart, link, num, rate, show, table } from "../lib.js";

function last(values) {
  return values.length ? values[values.length - 1] : null;
}

export async function mount(root) {
  const body = h("div", {});
  show(root, h("h1", {}, "Dashboard"), body);
  await liveArea(body, 5000, async () => {
    const d = await api("/api/overview");
    const s = d.series;
    const live = d.processes.filter((p) => !p.stale && !p.stopped).length;
    const stale = d.processes.filter((p) => p.stale).length;
    const errorsLastHour = s.errors.reduce((a, b) => a + b, 0);
    const states = Object.entries(d.states).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(", ");
    show(body,
      h("div", { class: "cards" },
        card("Share groups", num(d.groups.length), states || "none", "groups"),
        card("Processes", num(live), stale ? `${stale} stale` : "all reporting", "processes"),
        card("Accepted /s", rate(last(s.rates.accepted) ?? 0), `received ${rate(last(s.rates.received) ?? 0)}/s`, "accepted"),
        card("In flight", num(last(s.held) ?? 0), `${num(last(s.busy) ?? 0)} handlers busy`, "held"),
        card("Lag", num(d.lag), "records behind, all groups", "lag"),
        card("Errors", num(errorsLastHour), "in the charted window", "errors")),
      h("div", { class: "grid2" },
        h("div", { class: "panel" }, lineChart(s.t, [
          { label: "accepted", values: s.rates.accepted, cls: "s2" },
          { label: "released", values: s.rates.released, cls: "s3" },
          { label: "rejected", values: s.rates.rejected, cls: "s4" },
          { label: "dead-lettered", values: s.rates.dead_lettered, cls: "s5" },
        ], { title: "Records per second", format: rate })),
        h("div", { class: "panel" }, lineChart(s.t, [
          { label: "held", values: s.held, cls: "s1" },
          { label: "busy", values: s.busy, cls: "s3" },
        ], { title: "In flight" })),
        h("div", { class: "panel" }, lineChart(d.lag_series.map((p) => p[0]), [
          { label: "lag", values: d.lag_series.map((p) => p[1]), cls: "s5" },
        ], { title: "Lag (all groups)" })),
        h("div", { class: "panel" }, lineChart(s.t, [
          { label: "errors", values: s.errors, cls: "s4" },
        ], { title: `Errors per ${s.bucket_s} s` }))),
      h("h2", {}, "Share groups"),
      table([
        { label: "Group", cell: (g) => link(groupHref(g.group_id), g.group_id) },
        { label: "State", cell: (g) => badge(g.state) },
        { label: "Members", num: true, cell: (g) => num(g.members) },
        { label: "Lag", num: true, cell: (g) => num(g.lag) },
      ], d.groups, { empty: "No share groups.", id: "groups" }),
      h("h2", {}, "Recent errors"),
      table([
        { label: "When", cell: (e) => ago(d.now - e.at) },
        { label: "Route", cell: (e) => e.route },
        { label: "Record", cell: (e) => (e.topic === null ? "–" : `${e.topic}-${e.partition}@${e.offset}`) },
        { label: "Exception", wrap: true, cell: (e) => `${e.exception_type}: ${e.message}` },
      ], d.errors, { empty: "No errors reported." }));
  });
}
