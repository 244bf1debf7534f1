import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTENT_SECURITY_POLICY, SCRIPT, STYLE } from '../src/http/operator-page/assets.js';
import { serialLag, type OperatorPageData } from '../src/http/operator-page/data.js';
import { escapeHtml } from '../src/http/operator-page/html.js';
import { renderOperatorPage } from '../src/http/operator-page/render.js';
import { startHierarchy, type Hierarchy, hierarchyResolver } from './support/hierarchy.js';
import { operatorAct } from '../src/authority/operator-acts.js';
import { CHROMIUM } from './support/global-setup.js';
import { startTestServer, type TestServer } from './support/server.js';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const SCREENSHOT = '/tmp/operator-page.png';

/** The elements of the server-rendered chain, read from HTML with regular expressions (no DOM in node). */
function chainOf(page: string): { zone: string; server: string | null; kid: string | null }[] {
  return [...page.matchAll(/<li class="step" data-step-zone="([^"]*)">([\s\S]*?)<\/li>/g)].map((m) => ({
    zone: m[1]!,
    server: /<code class="server">([^<]*)<\/code>/.exec(m[2]!)?.[1] ?? null,
    kid: /<code class="kid">([^<]*)<\/code>/.exec(m[2]!)?.[1] ?? null,
  }));
}

describe('operator page: rendering', () => {
  it('escapes every value taken from data: error messages, URLs, the handle typed in', () => {
    const now = Date.UTC(2025, 0, 1);
    const hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>';
    const data: OperatorPageData = {
      now,
      server: {
        publicUrl: `https://ops.example/${hostile}`,
        resolver: {
          mode: 'iterative',
          rootServers: [`https://root.example/${hostile}`],
          forwarders: [],
          discovery: null,
          webfinger: false,
          anchors: [{ zone: '.', thumbprints: [hostile] }],
        },
      },
      zones: [
        {
          name: 'example',
          role: 'secondary',
          serial: 5,
          policy: null,
          records: 3,
          servers: [`https://a.example/${hostile}`],
          keys: ['k'.repeat(43)],
          unavailable: `zone example expired ${hostile}`,
          secondary: {
            sources: [`https://src.example/${hostile}`],
            lastSuccess: now - 90_000,
            lastSuccessAge: 90,
            lastError: `https://src.example: fetch failed ${hostile} & more`,
            primarySerial: 7,
            lag: 2,
            expired: true,
            transfers: { full: 1, incremental: 0, failed: 4 },
          },
          delegations: [{ name: `child.example`, servers: [`https://child.example/${hostile}`], ds: [hostile] }],
          fencedBy: { primary: `https://new.example/${hostile}`, serial: 9 },
          rollover: `key rollover publishing: waiting for ${hostile}`,
          log: { size: 12, cosignatures: 2 },
          fork: { why: `two roots of size 12 ${hostile}`, at: now },
          peers: {
            notifies: [{ target: `https://sec.example/${hostile}`, age: 3, ok: false, detail: `refused: 403 ${hostile}` }],
            transfers: [{ client: `sec1${hostile}`, age: 5, serial: 8, mode: 'incremental' }],
          },
        },
      ],
      lookup: { input: hostile, noResolver: false, error: { code: 'invalid_handle', message: `bad handle ${hostile}` }, result: null, bridged: null },
    };
    const page = renderOperatorPage(data);
    const primary = renderOperatorPage({ ...data, zones: [{ ...data.zones[0]!, role: 'primary', secondary: null }] });
    expect(primary).toContain(`delegates <code>child.example</code>`);
    expect(primary).toContain(`<code>https://new.example/${escapeHtml(hostile)}</code> holds serial 9`);
    expect(primary).not.toContain('<script>alert');
    // A copy whose last check failed is not shown as plainly serving.
    const failing = renderOperatorPage({
      ...data,
      zones: [{ ...data.zones[0]!, unavailable: null, secondary: { ...data.zones[0]!.secondary!, expired: false } }],
    });
    expect(failing).toContain('serving its last good copy');
    expect(failing).not.toContain('<span class="badge ok">serving</span>');
    expect(page).not.toContain('<script>alert');
    expect(page).not.toContain('<img');
    expect(page).not.toContain('onerror=alert(2)>');
    expect(page).toContain(`fetch failed ${escapeHtml(hostile)} &amp; more`);
    expect(page).toContain(`value="${escapeHtml(hostile)}"`);
    // The page's only script element is its own, and it is the one the policy's hash allows.
    expect(page.match(/<script/g)).toHaveLength(1);
    expect(page).toContain(`<script>${SCRIPT}</script>`);
    expect(page).toContain(`<style>${STYLE}</style>`);
    expect(page).toContain('2 behind');
    expect(page).toContain('90 s ago');
  });

  it('computes the lag in RFC 1982 serial arithmetic, across the wrap', () => {
    expect(serialLag(10, 7)).toBe(3);
    expect(serialLag(7, 7)).toBe(0);
    expect(serialLag(2, 4294967295)).toBe(3);
    expect(serialLag(4294967295, 2)).toBe(-3);
    expect(serialLag(2 ** 31, 0)).toBeNull();
    expect(serialLag(null, 3)).toBeNull();
    expect(serialLag(3, null)).toBeNull();
  });

  it('allows only its own inline script and style, by hash, and same-origin fetches', () => {
    expect(CONTENT_SECURITY_POLICY).toMatch(/script-src 'sha256-[A-Za-z0-9+/]+=*'(;|$)/);
    expect(CONTENT_SECURITY_POLICY).toMatch(/style-src 'sha256-[A-Za-z0-9+/]+=*'(;|$)/);
    expect(CONTENT_SECURITY_POLICY).toContain("default-src 'none'");
    expect(CONTENT_SECURITY_POLICY).toContain("connect-src 'self'");
    expect(CONTENT_SECURITY_POLICY).not.toContain('unsafe');
  });
});

describe('operator page over a real hierarchy', () => {
  let h: Hierarchy;
  let resolverServer: TestServer;
  let browser: Browser | null = null;

  beforeAll(async () => {
    h = await startHierarchy();
    resolverServer = await startTestServer({
      config: {
        resolver: hierarchyResolver(h),
      },
    });
    // The resolver's server also holds a secondary copy of social.example, so the zone table has replication state.
    const social = h.zones.get('social.example')!;
    resolverServer.ctx.zones.createSecondary('social.example', { primaries: [social.a.url], ds: [social.kid] });
    const status = await resolverServer.ctx.replicator.checkNow('social.example');
    expect(status.lastError).toBeNull();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await resolverServer?.close();
    await h?.close();
  }, 30_000);

  /** A fresh headless Chromium (playwright's launch uses a new temporary profile each time). */
  async function openPage(): Promise<Page> {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is not installed at ${CHROMIUM}: the operator page's browser test needs Debian's chromium (the test set-up, test/support/global-setup.ts, installs it when missing)`,
      );
    }
    browser ??= await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.setDefaultNavigationTimeout(15_000);
    return page;
  }

  it('serves the zones table with replication state, under a strict Content-Security-Policy', async () => {
    const res = await fetch(`${resolverServer.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
    const page = await res.text();
    const row = /<tr data-zone="social.example">([\s\S]*?)<\/tr>/.exec(page)?.[1] ?? '';
    expect(row).toContain('secondary');
    expect(row).toContain(h.zones.get('social.example')!.a.url);
    expect(row).toContain(h.zones.get('social.example')!.kid);
    expect(row).toContain('0 (up to date)');
    expect(row).toContain('serving');
    // The records its signed zone record counts: the page, anyone's to ask for, counts nothing itself.
    const copy = resolverServer.ctx.zones.require('social.example');
    const count = (JSON.parse(Buffer.from(copy.record.split('.')[1]!, 'base64url').toString()) as { count: number }).count;
    expect(count).toBeGreaterThan(0);
    expect(row).toContain(`<td class="num">${count}</td>`);
  });

  it('renders a lookup server-side with ?lookup=: the chain from the root anchor to the handle record', async () => {
    const res = await fetch(`${resolverServer.url}/?lookup=${encodeURIComponent('alice@social.example')}`);
    expect(res.status).toBe(200);
    const page = await res.text();
    const chain = chainOf(page);
    expect(chain.map((s) => s.zone)).toEqual(['.', 'example', 'social.example']);
    for (const step of chain) {
      const zone = h.zones.get(step.zone)!;
      expect([zone.a.url, zone.b.url]).toContain(step.server);
      expect(step.kid).toBe(zone.kid);
    }
    expect(page).toContain('<strong>trust anchor</strong>');
    expect(page).toContain('data-outcome="found"');
    expect(page).toContain('<code class="endpoint">https://home.example/alice@social.example</code>');
    expect(page).toContain(h.owner.kid);
    expect(page).toMatch(/TTL left: <strong class="ttl">\d+ s<\/strong>/);
  });

  it('marks an answer from the cache as cached: the walk that filled it is named, not timed as if it just ran', async () => {
    await h.register('cached@social.example', 'social.example');
    const first = await (await fetch(`${resolverServer.url}/?lookup=cached@social.example`)).text();
    const again = await (await fetch(`${resolverServer.url}/?lookup=cached@social.example`)).text();
    expect(first).not.toContain('class="badge cached"');
    expect(first).toMatch(/<code class="server">[^<]+<\/code> <span class="muted">\(\d+ ms\)<\/span>/);
    expect(again).toContain(`<span class="badge cached">from this resolver's cache</span>`);
    expect(again).not.toMatch(/<span class="muted">\(\d+ ms\)<\/span>/);
    expect(again).toContain('the walk that filled it asked');
  });

  it("shows that a handle record follows from its owner's history, and marks one the operator set (a court-ordered transfer) as operator-asserted", async () => {
    const owned = await (await fetch(`${resolverServer.url}/?lookup=alice@social.example`)).text();
    expect(owned).toMatch(/follows from its history \(1 entry, each checked\); its registration is <code class="genesis">[A-Za-z0-9_-]{43}<\/code>/);
    expect(owned).toContain('✓ signed by its owner');
    expect(owned).not.toContain('operator-asserted');

    await h.register('frank@news.example', 'news.example');
    const news = h.zones.get('news.example')!;
    operatorAct(news.a.ctx.store, news.a.ctx.zones, 'frank@news.example', {
      action: 'transfer',
      reason: 'court order 42',
      state: { endpoint: 'https://home.example/frank-new', keys: [h.owner.public] },
    });
    const transferred = await (await fetch(`${resolverServer.url}/?lookup=frank@news.example`)).text();
    expect(transferred).toContain('<code class="endpoint">https://home.example/frank-new</code>');
    expect(transferred).toContain('(2 entries, each checked)');
    expect(transferred).toContain('class="badge warn operator-asserted"');
    expect(transferred).not.toContain('✓ signed by its owner');
  });

  it('renders a verified denial, a typed error, and says plainly when the server has no resolver', async () => {
    const denial = await (await fetch(`${resolverServer.url}/?lookup=nobody@social.example`)).text();
    expect(denial).toContain('data-outcome="not_found"');
    expect(denial).toContain('data-record="denial"');
    expect(chainOf(denial).map((s) => s.zone)).toEqual(['.', 'example', 'social.example']);

    const bad = await (await fetch(`${resolverServer.url}/?lookup=${encodeURIComponent('<b>x</b>')}`)).text();
    expect(bad).toContain('data-code="invalid_handle"');
    expect(bad).not.toContain('<b>x</b>');

    const fragment = await fetch(`${resolverServer.url}/?lookup=carol@news.example&fragment=lookup`);
    const text = await fragment.text();
    expect(text.startsWith('<section class="result" data-outcome="found"')).toBe(true);
    expect(text).toContain('https://home.example/carol@news.example');

    const plain = await (await fetch(`${h.zones.get('.')!.a.url}/?lookup=alice@social.example`)).text();
    expect(plain).toContain('id="no-resolver"');
    expect(plain).toContain('data-outcome="no_resolver"');
  });

  it('in headless Chromium: type a handle, see the chain of trust; a missing handle shows the verified denial', async () => {
    const page = await openPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));

    await page.goto(`${resolverServer.url}/`, { waitUntil: 'load' });
    await expect(page.locator('h1').textContent()).resolves.toBe('idns operator page');
    // A marker that survives only if the script handles the submission (no full page load).
    await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 1));

    await page.locator('#lookup-input').fill('alice@social.example');
    await page.locator('#lookup-form button[type=submit]').click();
    await page.locator('#lookup-result [data-outcome="found"]').waitFor({ state: 'visible', timeout: 15_000 });

    const steps = page.locator('#lookup-result li.step');
    await expect(steps.count()).resolves.toBe(3);
    const zones = await steps.evaluateAll((els) => els.map((e) => e.getAttribute('data-step-zone')));
    expect(zones).toEqual(['.', 'example', 'social.example']);
    for (let i = 0; i < 3; i++) {
      const zone = h.zones.get(zones[i]!)!;
      const server = await steps.nth(i).locator('code.server').textContent();
      expect([zone.a.url, zone.b.url]).toContain(server);
      await expect(steps.nth(i).locator('code.kid').textContent()).resolves.toBe(zone.kid);
    }
    await expect(page.locator('#lookup-result li.final code.endpoint').textContent()).resolves.toBe('https://home.example/alice@social.example');
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(1);
    expect(new URL(page.url()).searchParams.get('lookup')).toBe('alice@social.example');
    await page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: 15_000 });

    await page.locator('#lookup-input').fill('nobody@social.example');
    await page.locator('#lookup-form button[type=submit]').click();
    await page.locator('#lookup-result [data-outcome="not_found"]').waitFor({ state: 'visible', timeout: 15_000 });
    await expect(page.locator('#lookup-result li.final.denial').count()).resolves.toBe(1);
    await expect(page.locator('#lookup-result .summary').textContent()).resolves.toContain('nobody@social.example does not exist');
    await expect(page.locator('#lookup-result li.step').count()).resolves.toBe(3);

    // Without the script (a plain form GET) the server renders the same result.
    await page.goto(`${resolverServer.url}/?lookup=bob@example`, { waitUntil: 'load' });
    await expect(page.locator('#lookup-result li.step').count()).resolves.toBe(2);
    await expect(page.locator('#lookup-input').inputValue()).resolves.toBe('bob@example');

    // The Content-Security-Policy let the page's own script and style run, and nothing failed.
    expect(problems).toEqual([]);
    await page.context().close();
  }, 90_000);
});
