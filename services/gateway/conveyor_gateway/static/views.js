// Which page the URL's fragment names: #machine/<id> (detail.js), #queue/<name> (queue.js) or,
// without one, the overview (dashboard.js). Links are plain fragments: a page can be kept,
// reloaded and sent.
"use strict";

const VIEWS = [
  { prefix: "#machine/", main: "#detail-view", open: openMachine, close: closeMachine },
  { prefix: "#queue/", main: "#queue-view", open: openQueue, close: closeQueue },
];
let shownView = null;

function viewOfHash() {
  for (const view of VIEWS) {
    if (!location.hash.startsWith(view.prefix)) continue;
    try {
      return { view, key: decodeURIComponent(location.hash.slice(view.prefix.length)) };
    } catch {
      return null; // not a name: the overview
    }
  }
  return null;
}

function showView() {
  const next = viewOfHash();
  const same = next && shownView && next.view === shownView.view && next.key === shownView.key;
  if (shownView && !same) shownView.view.close();
  $("#overview").hidden = next !== null;
  for (const view of VIEWS) $(view.main).hidden = !next || next.view !== view;
  document.title = next ? `${next.key} · Conveyor` : "Conveyor";
  if (next && !same) next.view.open(next.key);
  shownView = next;
}

window.addEventListener("hashchange", showView);
for (const back of document.querySelectorAll("a.back")) {
  back.addEventListener("click", (event) => {
    event.preventDefault();
    history.pushState(null, "", location.pathname); // no hashchange: shown here
    showView();
  });
}
showView();
