// One share group: state, members and assignment, per-partition SPSO / log end / lag / held,
// delivery counts, the processes working it, configs - and the admin actions, confirmed first.
import { alert, api, badge, barChart, card, confirmAction, h, liveArea, lineChart, num, rate, readOnly, show, table }
  from "../lib.js";
import { errorTable } from "./errors.js";
import { processTable } from "./processes.js";

const SHARE_CONFIGS = [
  "share.auto.offset.reset", "share.isolation.level", "share.record.lock.duration.ms",
  "share.session.timeout.ms", "share.heartbeat.interval.ms", "share.delivery.count.limit",
  "share.partition.max.record.locks", "share.renew.acknowledge.enable", "share.assignment.interval.ms",
];

export async function mount(root, [groupId]) {
  const base = `/api/groups/${encodeURIComponent(groupId)}`;
  const title = h("h1", {}, groupId);
  const body = h("div", {});
  const result = h("div", { id: "action-result" });
  const actions = h("div", {});
  show(root, title, result, body, actions);
  let topics = [];

  await liveArea(body, 5000, async () => {
    const d = await api(base);
    const g = d.group;
    show(title, groupId, badge(g.state));
    const assigned = g.members.flatMap((m) => Object.keys(m.assignment));
    const subscribed = g.members.flatMap((m) => m.subscriptions);
    const known = [...new Set([...g.partitions.map((p) => p.topic), ...assigned, ...subscribed])].sort();
    const redraw = known.join() !== topics.join();
    topics = known;
    const counts = d.delivery_counts;
    show(body,
      h("div", { class: "cards" },
        card("State", badge(g.state), `epoch ${g.group_epoch} · assignment ${g.assignment_epoch}`, "state"),
        card("Members", num(g.members.length), `assignor ${g.assignor || "–"}`, "members"),
        card("Lag", num(g.lag), "log end − start offset", "lag"),
        card("Held", num(d.held), "by reporting processes", "held"),
        card("Accepted /s", rate(d.series.rates.accepted.at(-1) ?? 0), "last bucket", "accepted")),
      h("h2", {}, "Partitions"),
      table([
        { label: "Topic", key: "topic", cell: (p) => p.topic },
        { label: "Partition", key: "partition", num: true, cell: (p) => num(p.partition) },
        { label: "Start offset (SPSO)", key: "start", num: true, cell: (p) => num(p.start_offset) },
        { label: "Log start", key: "log-start", num: true, cell: (p) => num(p.log_start) },
        { label: "Log end", key: "log-end", num: true, cell: (p) => num(p.log_end) },
        { label: "Lag", key: "lag", num: true, cell: (p) => num(p.lag) },
        { label: "Held", key: "held", num: true, cell: (p) => num(p.held) },
        { label: "Error", wrap: true, cell: (p) => p.error || "" },
      ], g.partitions, { empty: "The group has no offsets yet.", id: "partitions" }),
      h("h2", {}, "Members"),
      table([
        { label: "Member", key: "member", cell: (m) => h("span", { class: "mono", title: m.member_id }, m.member_id.slice(0, 12)) },
        { label: "Client id", key: "client", cell: (m) => m.client_id },
        { label: "Host", key: "host", cell: (m) => m.host },
        { label: "Epoch", num: true, cell: (m) => num(m.member_epoch) },
        { label: "Assignment", key: "assignment", wrap: true,
          cell: (m) => Object.entries(m.assignment).map(([t, ps]) => `${t}: ${ps.join(",")}`).join("  ") || "–" },
      ], g.members, { empty: "No members.", id: "members" }),
      h("div", { class: "grid2" },
        h("div", { class: "panel" }, lineChart(d.series.t, [
          { label: "accepted", values: d.series.rates.accepted, cls: "s2" },
          { label: "released", values: d.series.rates.released, cls: "s3" },
          { label: "rejected", values: d.series.rates.rejected, cls: "s4" },
        ], { title: "Records per second", format: rate })),
        h("div", { class: "panel" }, lineChart(d.lag_series.map((p) => p[0]), [
          { label: "lag", values: d.lag_series.map((p) => p[1]), cls: "s5" },
        ], { title: "Lag" })),
        h("div", { class: "panel", id: "delivery-counts" }, barChart(
          [1, 2, 3, 4, 5].map((k) => ({ label: k === 5 ? "5+" : String(k), value: counts[k] || 0 })),
          { title: "Delivery counts of received records" }))),
      h("h2", {}, "Processes"),
      processTable(d.now, d.processes, groupId),
      h("h2", {}, "Recent errors"),
      errorTable(d.now, d.errors),
      h("h2", {}, "Configs"),
      table([
        { label: "Name", cell: (c) => c.name },
        { label: "Value", key: "value", cell: (c) => (c.sensitive ? "(sensitive)" : c.value ?? "–") },
        { label: "Source", cell: (c) => (c.is_default ? "default" : c.source.toLowerCase().replace(/_/g, " ")) },
      ], g.configs, { empty: "No configs.", id: "configs" }));
    if (redraw && !d.read_only && !readOnly()) show(actions, adminActions(groupId, base, topics, result));
  });
}

function adminActions(groupId, base, topics, result) {
  const run = async (title, text, ok, path, payload, after) => {
    if (!(await confirmAction(title, text, ok))) return;
    try {
      const answer = await api(`${base}/${path}`, payload);
      show(result, alert("ok", after(answer)));
    } catch (err) {
      show(result, alert("error", err.message, err.code));
    }
    result.scrollIntoView({ block: "nearest" });
  };
  const topicSelect = (name) => h("select", { name }, topics.map((t) => h("option", { value: t }, t)));

  const resetTopic = topicSelect("topic");
  const resetTo = h("select", { name: "to" },
    h("option", { value: "latest" }, "latest (log end)"),
    h("option", { value: "earliest" }, "earliest (log start)"),
    h("option", { value: "datetime" }, "a date and time"));
  const resetWhen = h("input", { type: "datetime-local", name: "when", step: "1" });
  const reset = h("form", { id: "reset-form", onsubmit: (e) => {
    e.preventDefault();
    let to = resetTo.value;
    if (to === "datetime") {
      if (!resetWhen.value) return show(result, alert("error", "Pick a date and time to reset to."));
      to = new Date(resetWhen.value).toISOString();
    }
    const where = to === "latest" ? "the log end (skipping every record not yet finished)"
      : to === "earliest" ? "the log start (every record still in the log is delivered again)"
      : `the first record at or after ${new Date(to).toLocaleString()}`;
    run(`Reset offsets of ${groupId}?`,
      `The start offset of every partition of ${resetTopic.value} moves to ${where}. Kafka allows this only while the group has no members.`,
      "Reset offsets", "reset", { topic: resetTopic.value, to },
      (a) => `Start offsets of ${a.topic}: ${Object.entries(a.offsets).map(([p, o]) => `partition ${p} → ${o}`).join(", ")}.`
        + (Object.keys(a.errors).length ? ` Failed: ${Object.values(a.errors).join("; ")}` : ""));
  } },
  h("h3", {}, "Reset offsets"),
  h("label", {}, "Topic", resetTopic),
  h("div", { class: "row" }, h("label", {}, "To", resetTo), h("label", {}, "Date and time (local)", resetWhen)),
  h("div", {}, h("button", { class: "primary", type: "submit", disabled: topics.length ? null : true }, "Reset…")));

  const delTopic = topicSelect("topic");
  const delOffsets = h("form", { id: "delete-offsets-form", onsubmit: (e) => {
    e.preventDefault();
    run(`Delete offsets of ${groupId} on ${delTopic.value}?`,
      `The group's state for ${delTopic.value} is deleted; a later subscription starts afresh with share.auto.offset.reset. The group must have no members.`,
      "Delete offsets", "delete-offsets", { topics: [delTopic.value] },
      (a) => `Deleted the offsets of ${a.deleted.join(", ")}.`);
  } },
  h("h3", {}, "Delete offsets"),
  h("label", {}, "Topic", delTopic),
  h("div", {}, h("button", { class: "danger", type: "submit", disabled: topics.length ? null : true }, "Delete offsets…")));

  const cfgName = h("input", { name: "name", list: "share-configs", placeholder: "share.record.lock.duration.ms", required: true });
  const cfgValue = h("input", { name: "value", placeholder: "value (empty: back to the default)" });
  const config = h("form", { id: "config-form", onsubmit: (e) => {
    e.preventDefault();
    const name = cfgName.value.trim();
    const value = cfgValue.value.trim();
    const payload = value ? { set: { [name]: value } } : { delete: [name] };
    run(`Change ${name} of ${groupId}?`,
      value ? `${name} is set to ${value}.` : `${name} goes back to the broker's default.`,
      "Change config", "config", payload, (a) => `Config ${name} ${value ? `set to ${value}` : "reset to its default"}.`
        + (a.applied ? "" : " Kafka took the change; its brokers do not show it yet."));
  } },
  h("h3", {}, "Alter config"),
  h("datalist", { id: "share-configs" }, SHARE_CONFIGS.map((c) => h("option", { value: c }))),
  h("label", {}, "Name", cfgName), h("label", {}, "Value", cfgValue),
  h("div", {}, h("button", { class: "primary", type: "submit" }, "Change…")));

  const del = h("form", { id: "delete-group-form", onsubmit: (e) => {
    e.preventDefault();
    run(`Delete share group ${groupId}?`,
      "The group and its offsets are deleted. Kafka allows this only while the group has no members.",
      "Delete group", "delete", {}, () => `Deleted share group ${groupId}.`);
  } },
  h("h3", {}, "Delete group"),
  h("p", { class: "small muted" }, "Deletes the group and its persisted share-partition state."),
  h("div", {}, h("button", { class: "danger", type: "submit" }, "Delete group…")));

  return [h("h2", {}, "Admin actions"), h("div", { class: "actions" }, reset, delOffsets, config, del)];
}
