/**
 * The visualizer end to end: a real server (FakeProvider), the page built from the current sources, and
 * Debian's Chromium driven by playwright-core. Every wait is a Playwright auto-waiting locator or a page
 * condition; the only timer is the load generator's pace in the 10,000-workspace run. Where a test says a
 * request was not sent, a round trip the page made after the moment in question (opening a workspace)
 * stands for "meanwhile": the socket delivers in order.
 */
import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PerfSummary } from '../../visualizer/src/ui/perf.ts';
import { chromiumPath, describeWith } from '../helpers/require.ts';
import { startRig, TOKENS, type ServerRig } from '../server/rig.ts';
import { launchChromium, visualizerDist } from './browser.ts';

const SHOTS = join(import.meta.dirname, '../../test-output/visualizer');
const DEMO = 'ws-demo';
/** Slow provider starts for the demo workspace, so `starting` is on screen long enough to be seen. */
const DEMO_START_MS = 1500;

describeWith(chromiumPath(), 'visualizer in Chromium', (chromium) => {
  let rig: ServerRig;
  let browser: Browser;
  let dist: { dir: string; built: boolean } | undefined;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    [dist, browser] = await Promise.all([visualizerDist(), launchChromium(chromium)]);
    rig = await startRig({ server: { visualizerDir: dist.dir } });
    rig.provider.fault = (call) => (call.id === DEMO && call.op === 'start' ? { latencyMs: DEMO_START_MS } : undefined);
    await rig.supervisor.create(DEMO, { owner: 'alice', pool: 'gpu' });
    await rig.supervisor.ensure(DEMO);
  });

  afterAll(async () => {
    await browser?.close();
    await rig?.close();
    if (dist?.built) await rm(dist.dir, { recursive: true, force: true });
  });

  async function open(role: keyof typeof TOKENS, hash = '', on: ServerRig = rig, watch?: (page: Page) => void): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('pageerror', (err) => pageErrors.push(`${role}: ${err.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(`${role} console: ${m.text()}`);
    });
    watch?.(page);
    await page.goto(`${on.url}/?token=${TOKENS[role]}${hash}`);
    await page.getByTestId('connection').filter({ hasText: 'Connection: connected' }).waitFor();
    return page;
  }

  const timelineRow = (page: Page, cycle: number) => page.locator(`[data-testid=timeline] tr[data-cycle="${cycle}"]`);

  describe('an operator watching a workspace', () => {
    it('shows starting then running and a new timeline row with the source and reason when the SDK restarts it', async () => {
      const page = await open('operator', `#${DEMO}`);
      const state = page.getByTestId('current-state');
      await state.filter({ hasText: 'running' }).waitFor();
      const before = (await rig.supervisor.get(DEMO)).cycle;

      const sdk = rig.client('operator');
      const answer = await sdk.call('workspace.restart', { id: DEMO, source: 'manual', reason: 'e2e: restarted through the SDK' });
      expect(answer.outcome).toBe('started');

      await state.filter({ hasText: 'starting' }).waitFor();
      await page.screenshot({ path: join(SHOTS, 'operator-starting.png') });
      await state.filter({ hasText: 'running' }).waitFor();
      const row = timelineRow(page, before + 1);
      await row.filter({ hasText: '✓ completed' }).waitFor();
      expect(await row.locator('[data-col=source]').textContent()).toBe('manual');
      expect(await row.locator('[data-col=reason]').textContent()).toBe('e2e: restarted through the SDK');
      // The chart marks the current state with text, not colour alone.
      await page.locator('svg.chart g.node.current[data-state=running]').waitFor();
      await page.screenshot({ path: join(SHOTS, 'operator-running.png'), fullPage: true });
      await page.close();
    });

    it('shows the outcome of a restart clicked in the page and the cycle it caused', async () => {
      const page = await open('operator', `#${DEMO}`);
      await page.getByTestId('current-state').filter({ hasText: 'running' }).waitFor();
      const next = (await rig.supervisor.get(DEMO)).cycle + 1;
      await page.getByLabel('Reason').fill('e2e: clicked Restart');
      await page.getByRole('button', { name: 'Restart' }).click();

      const outcome = page.getByTestId('outcomes').locator('li[data-kind=restart][data-status=done]');
      await outcome.filter({ hasText: `started (cycle ${next})` }).waitFor();
      const row = timelineRow(page, next);
      await row.filter({ hasText: 'e2e: clicked Restart' }).waitFor();
      await page.getByTestId('current-state').filter({ hasText: 'running' }).waitFor();
      await row.scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(SHOTS, 'operator-restart-clicked.png'), fullPage: true });
      await page.close();
    });
  });

  describe('a viewer', () => {
    it('sees the workspace through keyboard navigation but no operator controls', async () => {
      const page = await open('viewer');
      await page.getByTestId('role').filter({ hasText: 'Role: viewer' }).waitFor();
      const list = page.getByRole('listbox', { name: 'Workspaces' });
      await list.locator(`[data-id="${DEMO}"]`).waitFor();
      await list.focus();
      await page.keyboard.press('Home');
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: DEMO, level: 2 }).waitFor();
      await page.getByTestId('current-state').filter({ hasText: 'running' }).waitFor();
      await page.locator('[data-testid=timeline] tr[data-cycle]').first().waitFor();
      expect(await page.getByRole('button', { name: 'Restart' }).count()).toBe(0);
      expect(await page.getByRole('button', { name: 'Stop' }).count()).toBe(0);
      expect(await page.getByTestId('outcomes').count()).toBe(0);
      // No pool is set on this server, so the pools panel stays hidden (whether or not it has pool.list).
      expect(await page.getByTestId('pools').isHidden()).toBe(true);
      await page.screenshot({ path: join(SHOTS, 'viewer.png'), fullPage: true });
      await page.close();
    });
  });

  describe('a workspace with a lifecycle policy', () => {
    const ID = 'ws-policy';

    it('shows the rules in words, counts the next action down, and marks the policy stop in recent events', async () => {
      await rig.supervisor.create(ID, { owner: 'alice' });
      await rig.supervisor.ensure(ID);
      const sdk = rig.client('operator');
      await sdk.call('workspace.setPolicy', { id: ID, policy: { idleTimeoutMs: 30 * 60_000, maxLifetimeMs: 8 * 3_600_000, maxLifetimeWarnMs: 15 * 60_000 } });

      const page = await open('operator', `#${ID}`);
      await page.getByTestId('current-state').filter({ hasText: 'running' }).waitFor();
      const rules = page.getByTestId('policy');
      await rules.filter({ hasText: 'idle timeout 30m' }).waitFor();
      expect(await rules.locator('li').allTextContents()).toEqual(['idle timeout 30m', 'max lifetime 8h (warn 15m before)']);
      const next = page.getByTestId('next-action');
      await next.filter({ hasText: /^stops in (29|30):\d\d — idle for 30m since / }).waitFor();
      // It ticks: the text a moment later is another second.
      const first = await next.textContent();
      await expect.poll(() => next.textContent(), { timeout: 10_000 }).not.toBe(first);
      await page.getByTestId('last-activity').filter({ hasText: /^last activity / }).waitFor();
      await page.locator(`[data-id="${ID}"] [data-col=next]`).filter({ hasText: /^stops (29|30)m$/ }).waitFor();
      await page.screenshot({ path: join(SHOTS, 'policy-countdown.png'), fullPage: true });

      // A one-second idle timeout stops it: the policy action stands out in recent events, and the view follows.
      await sdk.call('workspace.setPolicy', { id: ID, policy: { idleTimeoutMs: 1_000 } });
      const stop = page.getByTestId('recent-events').locator('li[data-tone=policy][data-type=policy]');
      await stop.filter({ hasText: 'policy stop (idle): idle for ' }).waitFor({ timeout: 15_000 });
      expect(await stop.first().locator('.ev-icon').textContent()).toBe('⚙');
      await page.getByTestId('current-state').filter({ hasText: 'idle' }).waitFor();
      await rules.filter({ hasText: 'idle timeout 1s' }).waitFor();
      await next.filter({ hasText: 'no policy action is scheduled' }).waitFor();
      await page.screenshot({ path: join(SHOTS, 'policy-stopped.png'), fullPage: true });
      await page.close();
    });
  });

  describe('10,000 workspaces at 1,000 transitions per second', () => {
    it('keeps up, and reports update latency and frame times', async () => {
      const N = 10_000;
      const creates: Array<Promise<unknown>> = [];
      for (let i = 0; i < N; i++) creates.push(rig.supervisor.create(`load-${String(i).padStart(5, '0')}`, { owner: `user-${i % 40}`, pool: `pool-${i % 7}` }));
      await Promise.all(creates);
      // The cases before this one leave their workspaces behind (the demo running, the policy one stopped).
      const total = rig.supervisor.size;
      const runningBefore = rig.supervisor.summary.getSnapshot().context.counts.running;
      const page = await open('admin');
      // More than fit one page: scroll to the end until every workspace is loaded.
      await loadAll(page);
      await page.getByTestId('counts').filter({ hasText: `${total} workspaces` }).waitFor({ timeout: 30_000 });
      await page.evaluate(() => window.wsupPerf!.reset());

      // Each restart of an idle workspace is two transitions (idle → starting → running).
      let transitions = 0;
      let events = 0;
      const sub = rig.supervisor.events.subscribe((ev) => {
        events++;
        if (ev.type === 'transition') transitions++;
      });
      const seconds = 3;
      const restartsPerSec = 500;
      const started = Date.now();
      let issued = 0;
      await new Promise<void>((resolve) => {
        const pace = setInterval(() => {
          const elapsed = (Date.now() - started) / 1000;
          const due = Math.min(seconds, elapsed) * restartsPerSec;
          for (; issued < due; issued++) void rig.supervisor.restart(`load-${String(issued % N).padStart(5, '0')}`, { source: 'manual', reason: 'load' });
          if (elapsed >= seconds) {
            clearInterval(pace);
            resolve();
          }
        }, 10);
      });
      const loadMs = Date.now() - started;
      await expect.poll(() => rig.supervisor.summary.getSnapshot().context.counts.running, { timeout: 20_000 }).toBeGreaterThanOrEqual(issued + runningBefore);
      sub.unsubscribe();
      // The page has applied every event (or resynced from a lagged notice) once its counts match.
      await page.getByTestId('counts').filter({ hasText: `running ${issued + runningBefore} ` }).waitFor({ timeout: 20_000 });
      const perf = await page.evaluate(() => window.wsupPerf!.summary());
      report(perf, { transitions, events, loadMs, workspaces: total });
      await page.screenshot({ path: join(SHOTS, 'load-10k.png') });
      expect(perf.events).toBeGreaterThan(0);
      expect(perf.latency.n).toBeGreaterThan(0);
      await page.close();
    });
  });

  describe('more workspaces than one page', () => {
    const N = 25_000;
    const id = (i: number) => `page-${String(i).padStart(5, '0')}`;
    let big: ServerRig;

    beforeAll(async () => {
      big = await startRig({ server: { visualizerDir: dist!.dir } });
      const creates: Array<Promise<unknown>> = [];
      for (let i = 0; i < N; i++) creates.push(big.supervisor.create(id(i), { owner: `user-${i % 40}`, pool: `pool-${i % 7}` }));
      await Promise.all(creates);
    });

    afterAll(() => big?.close());

    it('shows the first page, loads the next only when scrolled to the end, and keeps later workspaces out until then', async () => {
      const sent: Array<{ cursor: string | null }> = [];
      const page = await open('viewer', '', big, (p) => {
        p.on('websocket', (ws) =>
          ws.on('framesent', (f) => {
            for (const m of [JSON.parse(String(f.payload)) as unknown].flat() as Array<{ method?: string; params?: { cursor?: string } }>) {
              if (m.method === 'workspace.list') sent.push({ cursor: m.params?.cursor ?? null });
            }
          }),
        );
      });
      const more = page.getByTestId('more');
      const list = page.getByRole('listbox', { name: 'Workspaces' });
      await more.filter({ hasText: /^\d+ loaded · more/ }).waitFor({ timeout: 30_000 });
      const first = await loadedCount(page);
      expect(first).toBeGreaterThan(100);
      expect(first).toBeLessThan(N);
      await page.getByTestId('counts').filter({ hasText: `${first} loaded · more — in loaded rows: ○ idle ${first} ` }).waitFor();
      expect(await list.locator('[role=option]').first().getAttribute('aria-setsize')).toBe(String(first));
      await page.screenshot({ path: join(SHOTS, 'paging-first-page.png') });

      // Opened a workspace (a round trip later), still one page; scrolling part way asks for nothing either.
      await openFromList(page, id(0));
      expect(sent).toEqual([{ cursor: null }]);
      await list.evaluate((el, y) => (el.scrollTop = y), Math.floor(first / 3) * 30);
      const middle = id(Math.floor(first / 3) + 5);
      await openFromList(page, middle);
      expect(sent).toHaveLength(1);

      // A transition past the loaded range is not a row; one within it is.
      // (The later one's events reach the page after the earlier one's.)
      await big.supervisor.ensure(id(N - 3));
      await big.supervisor.ensure(id(3));
      await page.getByTestId('counts').filter({ hasText: `○ idle ${first - 1} · ▲ starting 0 · ● running 1 ` }).waitFor();
      expect(await loadedCount(page)).toBe(first);

      // Filters work on the loaded rows; a filtered list too short to scroll loads the next page with the button.
      await page.locator('#f-state').selectOption('running');
      await page.locator('.filters .shown').filter({ hasText: `showing 1 of ${first} loaded` }).waitFor();
      await page.screenshot({ path: join(SHOTS, 'paging-filtered.png') });
      expect(sent).toHaveLength(1); // the list shrank under the filter: that scroll was not the user's
      await more.getByRole('button', { name: 'Load more' }).click();
      await expect.poll(() => loadedCount(page), { timeout: 20_000 }).toBeGreaterThan(first);
      expect(sent).toEqual([{ cursor: null }, { cursor: id(first - 1) }]);
      await page.locator('#f-state').selectOption('all');

      // Every scroll to the end is one request, for the page after the last id loaded, until the list is complete.
      let loaded = await loadedCount(page);
      while (loaded < N) {
        const before = sent.length;
        await scrollToEnd(page);
        await expect.poll(() => loadedCount(page), { timeout: 20_000 }).toBeGreaterThan(loaded);
        expect(sent).toHaveLength(before + 1);
        expect(sent.at(-1)!.cursor).toBe(id(loaded - 1));
        if (before === 2) await page.screenshot({ path: join(SHOTS, 'paging-third-page.png') });
        loaded = await loadedCount(page);
        expect(loaded).toBeLessThanOrEqual(N);
      }
      await more.waitFor({ state: 'hidden' });
      await page.getByTestId('counts').filter({ hasText: `${N} workspaces: ○ idle ${N - 2} · ▲ starting 0 · ● running 2 ` }).waitFor();
      expect(sent.length).toBeLessThanOrEqual(Math.ceil(N / first) + 1);
      await scrollToEnd(page);
      await list.locator(`[data-id="${id(N - 3)}"] [data-state=running]`).waitFor({ state: 'attached' });
      // Complete: the end of the list asks for nothing more.
      const pages = sent.length;
      await list.evaluate((el) => (el.scrollTop = 0));
      await scrollToEnd(page);
      await openFromList(page, id(N - 1));
      expect(sent).toHaveLength(pages);
      await page.close();
    });
  });

  it('raised no page errors', () => {
    expect(pageErrors).toEqual([]);
  });
});

/** The loaded-row count the page shows under the list (every workspace once the list is complete). */
async function loadedCount(page: Page): Promise<number> {
  const more = page.getByTestId('more');
  if (await more.isHidden()) return Number((await page.getByTestId('counts').textContent())!.split(' ')[0]);
  return Number((await more.textContent())!.split(' ')[0]);
}

/** Wheel the list down to its end; resolves there, or once the list grew under the scroll (a page arrived). */
async function scrollToEnd(page: Page): Promise<void> {
  const list = page.getByRole('listbox', { name: 'Workspaces' });
  await list.hover();
  const height = await list.evaluate((el) => el.scrollHeight);
  await page.mouse.wheel(0, height);
  await page.waitForFunction((before) => {
    const el = document.getElementById('ws-list')!;
    return el.scrollTop + el.clientHeight >= el.scrollHeight - 1 || el.scrollHeight > before;
  }, height);
}

/** Open a workspace the list shows by clicking its row; resolves once its detail is on screen. */
async function openFromList(page: Page, id: string): Promise<void> {
  await page.getByRole('listbox', { name: 'Workspaces' }).locator(`[data-id="${id}"]`).click();
  await page.getByRole('heading', { name: id, level: 2 }).waitFor();
}

/** Scroll the list to its end until no more pages are left to load. */
async function loadAll(page: Page): Promise<void> {
  const more = page.getByTestId('more');
  await page.getByTestId('counts').filter({ hasText: /^[1-9]\d* (workspaces|loaded)/ }).waitFor({ timeout: 30_000 });
  while (await more.isVisible()) {
    const loaded = await loadedCount(page);
    await scrollToEnd(page);
    await expect.poll(async () => (await more.isHidden()) || (await loadedCount(page)) > loaded, { timeout: 20_000 }).toBe(true);
  }
}

function report(perf: PerfSummary, load: { transitions: number; events: number; loadMs: number; workspaces: number }): void {
  const rate = Math.round((load.transitions / load.loadMs) * 1000);
  console.log(
    [
      `[visualizer perf] ${load.workspaces} workspaces, ${load.transitions} transitions (${rate}/s) and ${load.events} events in ${load.loadMs} ms`,
      `  page: ${perf.events} events applied in ${perf.batches} batches (${(perf.events / Math.max(1, perf.batches)).toFixed(1)} events/batch)`,
      `  update latency (server event → page updated), ms: p50 ${perf.latency.p50.toFixed(0)}, p95 ${perf.latency.p95.toFixed(0)}, max ${perf.latency.max.toFixed(0)} (n=${perf.latency.n})`,
      `  of which in the page (first event of a batch arrived → page updated), ms: p50 ${perf.inPage.p50.toFixed(0)}, p95 ${perf.inPage.p95.toFixed(0)}, max ${perf.inPage.max.toFixed(0)}`,
      `  frame interval, ms: p50 ${perf.frames.p50.toFixed(1)}, p95 ${perf.frames.p95.toFixed(1)}, max ${perf.frames.max.toFixed(1)} (n=${perf.frames.n})`,
    ].join('\n'),
  );
}
