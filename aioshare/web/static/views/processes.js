// Processes: every App reporting to the report topic; stale ones (no report for 3 intervals) marked.
import { ago, api, badge, duration, h, liveArea, num, processState, show, table } from "../lib.js";

export function processTable(now, processes, groupId) {
  return table([
    { label: "Process", key: "process", cell: (p) => h("span", { class: "mono", title: p.process_id }, p.process_id.slice(0, 8)) },
    { label: "Host", key: "host", cell: (p) => `${p.report.host} (pid ${p.report.pid})` },
    { label: "State", key: "state", cell: (p) => badge(processState(p)) },
    { label: "Last report", key: "last-seen", num: true, cell: (p) => ago(p.last_seen_s) },
    { label: "Routes", key: "routes", wrap: true,
      cell: (p) => p.report.routes.filter((r) => !groupId || r.group_id === groupId)
        .map((r) => `${r.name} → ${r.group_id} (${r.topics.join(",")})`).join("; ") || "–" },
    { label: "Busy", num: true, cell: (p) => num(sum(p, groupId, (r) => r.busy)) },
    { label: "Held", num: true, key: "held", cell: (p) => num(sum(p, groupId, (r) => r.held_records)) },
    { label: "Accepted", num: true, cell: (p) => num(sum(p, groupId, (r) => r.accepted)) },
    { label: "Errors", num: true, cell: (p) => num(sum(p, groupId, (r) => r.errors)) },
    { label: "Uptime", num: true, cell: (p) => duration(p.report.uptime_s) },
    { label: "Version", cell: (p) => p.report.aioshare_version || "–" },
  ], processes, {
    empty: "No process has reported yet.",
    id: "processes",
    rowClass: (p) => (p.stopped ? "stopped" : p.stale ? "stale" : null),
  });
}

function sum(p, groupId, pick) {
  return p.report.routes.filter((r) => !groupId || r.group_id === groupId).reduce((a, r) => a + pick(r), 0);
}

export async function mount(root) {
  const body = h("div", {});
  show(root, h("h1", {}, "Processes"), body);
  await liveArea(body, 5000, async () => {
    const d = await api("/api/processes");
    show(body, processTable(d.now, d.processes));
  });
}
