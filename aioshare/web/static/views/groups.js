// Share groups: state, members, topics and lag of every group.
import { api, badge, groupHref, h, liveArea, link, num, show, table } from "../lib.js";

export async function mount(root) {
  const body = h("div", {});
  show(root, h("h1", {}, "Share groups"), body);
  await liveArea(body, 5000, async () => {
    const groups = await api("/api/groups");
    show(body, table([
      { label: "Group", key: "group", cell: (g) => link(groupHref(g.group_id), g.group_id) },
      { label: "State", key: "state", cell: (g) => badge(g.state) },
      { label: "Members", key: "members", num: true, cell: (g) => num(g.members) },
      { label: "Topics", key: "topics", cell: (g) => g.topics.join(", ") || "–" },
      { label: "Lag", key: "lag", num: true, cell: (g) => num(g.lag) },
      { label: "Error", key: "error", wrap: true, cell: (g) => g.error || "" },
    ], groups, { empty: "No share groups.", id: "groups" }));
  });
}
