/**
 * The visualizer's entry: read the token from the URL, connect through the client SDK, and render the
 * model on every animation frame that has changes. Served by wsup at `/`; `wsup serve` prints the URL
 * with `?token=`.
 *
 * @example
 * // http://127.0.0.1:7070/?token=wsup_…            (all workspaces)
 * // http://127.0.0.1:7070/?token=wsup_…#ws-1       (open ws-1)
 */
import { ROLES, WsupClient, type Role } from '../../src/client/index.ts';
import { chartGraph } from './chart/graph.ts';
import { browserElk } from './chart/elk-browser.ts';
import { layoutChart, type LaidChart } from './chart/layout.ts';
import { Controller } from './controller.ts';
import { VisualizerModel, type Change } from './model/model.ts';
import { DetailView } from './ui/detail-view.ts';
import { h } from './ui/dom.ts';
import { ListView, MoreBar } from './ui/list-view.ts';
import { PoolsView } from './ui/pools-view.ts';
import { PerfProbe } from './ui/perf.ts';
import { Filters, StatusBar } from './ui/toolbar.ts';

declare global {
  interface Window {
    wsupPerf?: PerfProbe;
  }
}

const clock = { now: () => Date.now() };

/** The token's role from the server (`GET /whoami`), or null when it cannot tell. */
async function whoami(token: string): Promise<Role | null> {
  const res = await fetch('/whoami', { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) return null;
  const body = (await res.json()) as { role?: unknown };
  return ROLES.find((r) => r === body.role) ?? null;
}

function boot(): void {
  const token = new URLSearchParams(location.search).get('token');
  const root = document.getElementById('app')!;
  if (!token) {
    root.append(h('p', { class: 'error', role: 'alert' }, 'No token in the address: open the URL `wsup serve` printed (it ends in ?token=…), or add ?token=<your token>.'));
    return;
  }
  const header = document.getElementById('status')!;
  const listPane = document.getElementById('list-pane')!;
  const detailPane = document.getElementById('detail-pane')!;
  const errors = document.getElementById('errors')!;
  const showError = (text: string) => errors.replaceChildren(h('p', { role: 'alert' }, text));

  const model = new VisualizerModel({ clock, schedule: (fn) => requestAnimationFrame(fn) });
  const client = new WsupClient({
    url: location.origin,
    token,
    requestTimeoutMs: 120_000,
    onStateChange: (state, detail) => model.setConnection(state, detail),
  });
  const controller = new Controller(client, model, {
    fetchRole: () => whoami(token),
    onError: showError,
    every: (ms, fn) => {
      const timer = setInterval(fn, ms);
      return () => clearInterval(timer);
    },
  });
  let chart: LaidChart | null = null;
  const status = new StatusBar(header);
  const pools = new PoolsView(listPane);
  const filters = new Filters(listPane, (patch) => {
    model.list.setFilter(patch);
    renderList();
  });
  const list = new ListView(listPane, {
    now: clock.now,
    onNearEnd: () => void controller.more(),
    onOpen: (id) => {
      history.replaceState(null, '', `#${encodeURIComponent(id)}`);
      void controller.open(id).then(() => document.getElementById('detail-title')?.focus());
    },
  });
  const more = new MoreBar(listPane, () => void controller.more());
  const detail = new DetailView(detailPane, {
    clock,
    chart: () => chart,
    actions: {
      restart: (id, reason) => void controller.restart(id, reason),
      ensure: (id) => void controller.ensure(id),
      stop: (id) => void controller.stop(id),
    },
  });
  const perf = new PerfProbe(clock.now);
  window.wsupPerf = perf;

  function renderList(): void {
    list.update(model.list.visible(), (id) => model.list.get(id), model.detail?.id ?? null);
    more.render(model);
    filters.render(model);
    status.renderCounts(model);
  }

  model.onChange((c: Change) => {
    if (c.list || c.detail) renderList();
    if (c.status) status.render(model);
    if (c.detail || c.status) detail.render(model, c);
    if (c.pools) pools.render(model.pools, clock.now());
    if (c.events > 0) perf.rendered(c.events, c.oldestAt, c.queuedAt);
  });
  let ticks = 0;
  setInterval(() => {
    detail.tick(model);
    pools.tick(model.pools, clock.now());
    // The list's "next" column moves on in whole seconds at the finest.
    if (++ticks % 4 === 0) list.tick();
  }, 250);

  client
    .call('machine.definition', {})
    .then(({ definition }) => layoutChart(chartGraph(definition), browserElk()))
    .then(
      (laid) => {
        chart = laid;
        detail.render(model, { detail: true, status: true });
      },
      (err: unknown) => showError(`statechart unavailable: ${err instanceof Error ? err.message : String(err)}`),
    );

  controller.start().then(
    () => {
      status.render(model);
      const wanted = decodeURIComponent(location.hash.slice(1));
      if (wanted) void controller.open(wanted);
    },
    (err: unknown) => showError(`cannot load workspaces: ${err instanceof Error ? err.message : String(err)}`),
  );
}

boot();
