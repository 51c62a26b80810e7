// Errors: the handler exceptions the processes reported, newest first, with the record's coordinates.
import { ago, api, h, liveArea, num, show, table } from "../lib.js";

export function errorTable(now, errors) {
  return table([
    { label: "When", key: "when", cell: (e) => h("span", { title: new Date(e.at * 1000).toISOString() }, ago(now - e.at)) },
    { label: "Route", key: "route", cell: (e) => e.route },
    { label: "Reason", cell: (e) => e.reason },
    { label: "Record", key: "record", cell: (e) => (e.topic === null ? "–" : `${e.topic}-${e.partition}@${e.offset}`) },
    { label: "Deliveries", num: true, cell: (e) => num(e.delivery_count) },
    { label: "Exception", key: "exception", wrap: true, cell: (e) => h("div", {},
      h("b", {}, e.exception_type), e.message ? `: ${e.message}` : "",
      e.traceback_head ? h("details", {}, h("summary", {}, "traceback"), h("pre", {}, e.traceback_head)) : null) },
    { label: "Process", cell: (e) => h("span", { class: "mono" }, e.process_id.slice(0, 8)) },
  ], errors, { empty: "No errors reported.", id: "errors" });
}

export async function mount(root) {
  const body = h("div", {});
  show(root, h("h1", {}, "Errors"), body);
  await liveArea(body, 5000, async () => {
    const d = await api("/api/errors?limit=200");
    show(body, errorTable(d.now, d.errors));
  });
}
