// Topics: partitions and log offsets; any topic can be browsed as a dead-letter topic.
import { api, h, liveArea, num, show, table } from "../lib.js";

export async function mount(root) {
  const body = h("div", {});
  show(root, h("h1", {}, "Topics"), body);
  await liveArea(body, 10000, async () => {
    const topics = await api("/api/topics");
    show(body, table([
      { label: "Topic", key: "topic", cell: (t) => t.name },
      { label: "Partitions", key: "partitions", num: true, cell: (t) => num(t.partitions.length) },
      { label: "Records", key: "records", num: true, cell: (t) => num(t.records) },
      { label: "Log start … end", wrap: true, cell: (t) => t.partitions
        .map((p) => `${p.partition}: ${num(p.log_start)} … ${num(p.log_end)}`).join("  ·  ") },
      { label: "", cell: (t) => h("a", { href: `/dlq/${encodeURIComponent(t.name)}` }, "browse") },
    ], topics, { empty: "No topics.", id: "topics" }));
  });
}
