// Dead letters: browse a dead-letter topic with aioshare's headers; replay one or all records
// to the topic each came from.
import { alert, api, confirmAction, h, num, readOnly, show, table } from "../lib.js";

export async function mount(root, [topic]) {
  if (!topic) return mountIndex(root);
  const result = h("div", { id: "action-result" });
  const body = h("div", {});
  const partition = h("select", { name: "partition" }, h("option", { value: "" }, "all"));
  const offset = h("input", { name: "offset", type: "number", min: "0", placeholder: "log start" });
  const limit = h("input", { name: "limit", type: "number", min: "1", max: "500", value: "50" });
  let page = null;

  const load = async () => {
    const q = new URLSearchParams({ limit: limit.value || "50" });
    if (partition.value !== "") q.set("partition", partition.value);
    if (offset.value !== "") q.set("offset", offset.value);
    try {
      const d = await api(`/api/dlq/${encodeURIComponent(topic)}?${q}`);
      page = d.page;
      if (partition.options.length === 1) {
        for (const p of page.partitions) partition.append(h("option", { value: String(p.partition) }, String(p.partition)));
      }
      draw(d.read_only || readOnly());
    } catch (err) {
      show(body, alert("error", err.message, err.code));
    }
  };
  const replay = async (payload, text) => {
    if (!(await confirmAction(`Replay to the original topic?`, text, "Replay"))) return;
    try {
      const r = await api(`/api/dlq/${encodeURIComponent(topic)}/replay`, payload);
      const where = Object.entries(r.targets).map(([t, n]) => `${num(n)} to ${t}`).join(", ");
      const said = `Replayed ${num(r.replayed)} record${r.replayed === 1 ? "" : "s"}${where ? ` (${where})` : ""}.`
        + (r.skipped_count ? ` Skipped ${num(r.skipped_count)} without an original topic.` : "");
      if (r.capped) {
        const left = Object.entries(r.next_offset).map(([p, o]) => `partition ${p} from offset ${num(o)}`).join(", ");
        show(result, h("div", { class: "alert warn", role: "status", id: "replay-capped" },
          `${said} Stopped at the limit of ${num(r.limit)} records read per replay: ${left} not replayed yet.`,
          h("button", { type: "button", id: "replay-continue", onclick: () => replay({ all: true, from: r.next_offset },
            `The records of ${topic} from where the last replay stopped (${left}) are produced again to their original topics.`) },
          "Continue…")));
      } else {
        show(result, alert("ok", said));
      }
    } catch (err) {
      show(result, alert("error", err.message, err.code));
    }
  };
  const draw = (ro) => {
    const ranges = page.partitions.map((p) => `${p.partition}: ${num(p.log_start)} … ${num(p.log_end)}`).join("  ·  ");
    const more = page.partitions.some((p) => (page.next_offset[p.partition] ?? p.log_end) < p.log_end);
    show(body,
      h("p", { class: "muted small" }, `Partitions (log start … end): ${ranges}`),
      table([
        { label: "Partition", num: true, cell: (r) => num(r.partition) },
        { label: "Offset", key: "offset", num: true, cell: (r) => num(r.offset) },
        { label: "Time", cell: (r) => new Date(r.timestamp).toLocaleString() },
        { label: "Original", key: "original", cell: (r) => (r.dlq["original.topic"]
          ? `${r.dlq["original.topic"]}-${r.dlq["original.partition"]}@${r.dlq["original.offset"]}` : "–") },
        { label: "Reason", key: "reason", cell: (r) => r.dlq.reason || "–" },
        { label: "Deliveries", num: true, cell: (r) => r.dlq["delivery.count"] || "–" },
        { label: "Exception", wrap: true, cell: (r) => (r.dlq["exception.class"]
          ? h("span", {}, h("b", {}, r.dlq["exception.class"]), `: ${r.dlq["exception.message"] || ""}`) : "–") },
        { label: "Key", wrap: true, cell: (r) => payloadText(r.key) },
        { label: "Value", key: "value", wrap: true, cell: (r) => payloadText(r.value) },
        { label: "Headers", wrap: true, cell: (r) => (r.headers.length
          ? h("details", {}, h("summary", {}, `${r.headers.length}`), h("pre", {}, r.headers.map(([k, v]) => `${k}: ${v}`).join("\n")))
          : "–") },
        { label: "", cell: (r) => (ro || !r.dlq["original.topic"] ? "" : h("button", {
          class: "replay", onclick: () => replay({ partition: r.partition, offset: r.offset },
            `Record ${r.partition}@${r.offset} is produced again to ${r.dlq["original.topic"]} with its key, value and headers (not aioshare's).`),
        }, "Replay…")) },
      ], page.records, { empty: "No records in this range.", id: "records" }),
      more ? h("button", { onclick: () => nextPage() }, "Next page") : null);
  };
  const nextPage = () => {
    const next = Object.entries(page.next_offset);
    const open = next.filter(([p, o]) => o < page.partitions.find((r) => r.partition === Number(p)).log_end);
    if (open.length) {
      partition.value = open[0][0];
      offset.value = String(open[0][1]);
      load();
    }
  };
  const controls = h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); load(); } },
    h("label", {}, "Partition", partition), h("label", {}, "From offset", offset), h("label", {}, "Limit", limit),
    h("button", { type: "submit" }, "Show"),
    readOnly() ? null : h("button", { type: "button", id: "replay-all", class: "danger", onclick: () => replay({ all: true },
      `Every record of ${topic} is produced again to its original topic.`) }, "Replay all…"));
  show(root, h("h1", {}, `Dead letters: ${topic}`), controls, result, body);
  await load();
}

function payloadText(p) {
  if (p.encoding === "null") return h("span", { class: "muted" }, "null");
  const text = p.text.length > 160 ? `${p.text.slice(0, 160)}…` : p.text;
  return h("span", { class: "mono", title: `${p.size} bytes${p.truncated ? ", truncated" : ""}` },
    p.encoding === "base64" ? `base64:${text}` : text);
}

async function mountIndex(root) {
  const topics = await api("/api/topics");
  const dlqs = topics.filter((t) => /(\.|-|_)(dlq|dead-?letters?)$/i.test(t.name));
  show(root, h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, "Topics whose name ends in .dlq or dead-letter; any topic can be opened at /dlq/<topic>."),
    table([
      { label: "Topic", key: "topic", cell: (t) => h("a", { href: `/dlq/${encodeURIComponent(t.name)}` }, t.name) },
      { label: "Records", num: true, cell: (t) => num(t.records) },
      { label: "Partitions", num: true, cell: (t) => num(t.partitions.length) },
    ], dlqs, { empty: "No dead-letter topics.", id: "dlq-topics" }));
}
