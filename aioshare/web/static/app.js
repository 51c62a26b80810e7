// aioshare web: the page shell's script. It picks the view module that the path names and
// gives it the helpers below. No framework, no build step: plain ES modules.
import { api, h, show } from "./lib.js";

const ROUTES = [
  [/^\/$/, "dashboard"],
  [/^\/groups\/?$/, "groups"],
  [/^\/groups\/(.+)$/, "group"],
  [/^\/processes\/?$/, "processes"],
  [/^\/errors\/?$/, "errors"],
  [/^\/dlq\/?$/, "dlq"],
  [/^\/dlq\/(.+)$/, "dlq"],
  [/^\/topics\/?$/, "topics"],
];

async function main() {
  const path = location.pathname;
  let view = null;
  let params = [];
  for (const [pattern, name] of ROUTES) {
    const m = pattern.exec(path);
    if (m) {
      view = name;
      params = m.slice(1).map(decodeURIComponent);
      break;
    }
  }
  const nav = view === "group" ? "groups" : view;
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === nav);
  }
  const root = document.getElementById("main");
  if (!view) {
    show(root, h("div", { class: "alert error" }, `No page at ${path}.`));
    return;
  }
  try {
    const meta = await api("/api/meta");
    document.body.dataset.readOnly = meta.read_only ? "true" : "false";
    document.getElementById("meta").textContent =
      `${meta.bootstrap_servers} · aioshare ${meta.version}${meta.read_only ? " · read-only" : ""}`;
    const module = await import(`./views/${view}.js`);
    await module.mount(root, params, meta);
  } catch (err) {
    show(root, h("div", { class: "alert error", role: "alert" }, err.message || String(err)));
  }
}

main();
