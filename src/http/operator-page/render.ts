import type { ErrorCode } from '../../errors.js';
import { SCRIPT, STYLE } from './assets.js';
import type { BridgedView, ChainStep, ChainView, FinalRecord, LookupView, OperatorPageData, ResolverView, ServerView, ZoneView } from './data.js';
import { html, raw, type Html } from './html.js';

/** What an error code means to an operator reading the page. */
const HINTS: Partial<Record<ErrorCode, string>> = {
  invalid_handle: 'This is not a valid handle: it must look like local@host, for example alice@social.example.',
  verification_failed:
    'A server sent something that did not verify (a forged or wrongly signed record, a key the parent does not vouch for, or an expired signature). Nothing unverified is shown.',
  resolution_failed: 'No server of a zone gave a usable answer (down, unreachable, or answering with errors).',
  referral_limit: 'The hierarchy referred the resolver onwards more times than it allows.',
  budget_exceeded: 'The lookup used up its time or request budget.',
  address_refused: 'A server of the chain has an http URL or a private or loopback address, which this resolver does not contact.',
  no_trust_anchor: "No trust anchor configured on this server covers the handle's host.",
  rate_limited: 'Too many lookups from your address: wait a little and retry.',
  bad_response: 'A server answered with something that is not a valid reply.',
  network_error: 'A server could not be reached.',
};

/** A duration in seconds, short and readable: "42 s", "5 min", "3 h 20 min", "6 d 2 h". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h${m % 60 ? ` ${m % 60} min` : ''}`;
  const d = Math.floor(h / 24);
  return `${d} d${h % 24 ? ` ${h % 24} h` : ''}`;
}

/** A UTC time, seconds since the epoch: "2025-06-01 12:00:00 UTC". */
export function formatTime(epochSeconds: number): string {
  return `${new Date(epochSeconds * 1000).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

function expiry(expSeconds: number, nowMs: number): Html {
  const left = expSeconds - nowMs / 1000;
  return html`<span>${formatTime(expSeconds)} <span class="${left > 0 ? 'muted' : 'bad'}">(${left > 0 ? `in ${formatDuration(left)}` : 'expired'})</span></span>`;
}

function codes(values: readonly string[], cls = ''): Html {
  if (values.length === 0) return html`<span class="muted">none</span>`;
  return html`<ul class="plain">${values.map((v) => html`<li><code class="${cls}">${v}</code></li>`)}</ul>`;
}

/** The whole page. */
export function renderOperatorPage(data: OperatorPageData): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>idns operator page</title>
<style>${raw(STYLE)}</style>
</head>
<body>
${renderHeader(data.server, data.now)}
<main>
${renderZones(data.zones)}
<section id="lookup" aria-labelledby="lookup-title">
<h2 id="lookup-title">Look up a handle</h2>
${data.server.resolver ? renderResolverLine(data.server.resolver) : html`<p class="notice" id="no-resolver">This server does not run the resolver role, so it cannot look handles up. Start it with <code>--root URL --anchor ZONE=THUMBPRINT</code> (or <code>--forward URL</code>) to turn it on.</p>`}
<form class="lookup" id="lookup-form" method="get" role="search">
<label for="lookup-input">Handle</label>
<input id="lookup-input" name="lookup" type="text" value="${data.lookup?.input ?? ''}" placeholder="alice@social.example" autocomplete="off" autocapitalize="off" spellcheck="false" maxlength="400">
<button type="submit">Resolve</button>
</form>
<p id="lookup-status" role="status"></p>
<div id="lookup-result" aria-live="polite">${data.lookup ? raw(renderLookup(data.lookup, data.now)) : ''}</div>
</section>
</main>
<script>${raw(SCRIPT)}</script>
</body>
</html>
`.value;
}

function renderHeader(server: ServerView, now: number): Html {
  return html`<header>
<h1>idns operator page</h1>
<p>${server.publicUrl ? html`server <code>${server.publicUrl}</code> · ` : ''}resolver role: ${server.resolver ? server.resolver.mode : 'off'} · page made ${formatTime(Math.floor(now / 1000))}</p>
</header>`;
}

function renderResolverLine(r: ResolverView): Html {
  const servers =
    r.mode === 'forwarding'
      ? html`forwarding to ${r.forwarders.map((u, i) => html`${i ? ', ' : ''}<code>${u}</code>`)}`
      : html`walking from root servers ${r.rootServers.map((u, i) => html`${i ? ', ' : ''}<code>${u}</code>`)}`;
  const anchors = r.anchors.map(
    (a, i) => html`${i ? '; ' : ''}<code>${a.zone}</code> = ${a.thumbprints.map((t, j) => html`${j ? ', ' : ''}<code>${t}</code>`)}`,
  );
  const d = r.discovery;
  const discovery = d
    ? html` Zones published without a root are found through ${d.dnsServers ? html`the validating DNS servers ${d.dnsServers.map((u, i) => html`${i ? ', ' : ''}<code>${u}</code>`)}` : "the system's DNS resolvers (not validating: TXT records need their HTTPS document)"}${d.requireDnssec ? ', DNSSEC required' : ''}; ${r.webfinger ? 'handles whose host publishes none are resolved by WebFinger, marked unverified.' : 'the WebFinger bridge is off.'}`
    : '';
  if (r.anchors.length === 0) return html`<p class="muted">Lookups go through this server's resolver, with no configured trust anchor.${discovery}</p>`;
  return html`<p class="muted">Lookups go through this server's resolver, ${servers}, and are verified from the trust anchor${r.anchors.length > 1 ? 's' : ''} ${anchors}.${discovery}</p>`;
}

/** The table of zones held here. */
export function renderZones(zones: readonly ZoneView[]): Html {
  if (zones.length === 0) {
    return html`<section id="zones" aria-labelledby="zones-title"><h2 id="zones-title">Zones held here</h2><p class="muted">This server holds no zone.</p></section>`;
  }
  return html`<section id="zones" aria-labelledby="zones-title">
<h2 id="zones-title">Zones held here (${zones.length})</h2>
<table>
<thead><tr><th>Zone</th><th>Role</th><th>Serial</th><th>Policy</th><th>Records</th><th>Servers (zone record)</th><th>Keys</th><th>Replication</th></tr></thead>
<tbody>
${zones.map((z) => renderZoneRow(z))}
</tbody>
</table>
</section>`;
}

function renderZoneRow(z: ZoneView): Html {
  return html`<tr data-zone="${z.name}">
<td><code class="zone-name">${z.name}</code></td>
<td>${z.role}</td>
<td class="num">${z.serial ?? html`<span class="muted">none yet</span>`}</td>
<td>${z.policy ?? html`<span class="muted">set on the primary</span>`}</td>
<td class="num">${z.records ?? html`<span class="muted">not stated</span>`}</td>
<td>${codes(z.servers)}</td>
<td>${codes(z.keys)}</td>
<td>${z.secondary ? renderReplication(z) : renderPrimary(z)}${renderLog(z)}</td>
</tr>`;
}

/** The zone's log: its size and cosignatures, and the evidence of a fork this server saw as its witness. */
function renderLog(z: ZoneView): Html {
  const log =
    z.log === null
      ? html`<p class="muted">no log here yet (a copy made by an older idns, until its next full transfer)</p>`
      : html`<p class="log">log: ${z.log.size} leaves; checkpoint cosigned by ${z.log.cosignatures} witness${z.log.cosignatures === 1 ? '' : 'es'}</p>`;
  const fork = z.fork
    ? html`<p><span class="badge bad">fork</span> as its witness, this server was shown two checkpoints of the zone that do not extend one another (${formatTime(Math.floor(z.fork.at / 1000))}): ${z.fork.why}. The evidence is at <code>GET /v1/witness</code>; nothing more of the zone is cosigned here</p>`
    : '';
  return html`${log}${fork}`;
}

/** A primary's replication cell: its fence, if any, and the zones it delegates. */
function renderPrimary(z: ZoneView): Html {
  const fence = z.fencedBy
    ? html`<p><span class="badge bad">fenced</span> <code>${z.fencedBy.primary}</code> holds serial ${z.fencedBy.serial}, newer, naming itself the primary: this server takes no writes and signs nothing for the zone (<code>idns zone unfence</code> once that server is retired, or re-point this one as a secondary)</p>`
    : html`<span class="muted">primary: serves its own copy</span>`;
  const rollover = z.rollover === null ? '' : html`<p><span class="badge">rekey</span> ${z.rollover}</p>`;
  const { notifies, transfers } = z.peers;
  const peers =
    notifies.length + transfers.length === 0
      ? ''
      : html`<dl class="kv secondaries">
${notifies.map(
  (n) =>
    html`<dt>notified <code>${n.target}</code></dt><dd>${formatDuration(n.age)} ago: ${n.ok ? html`<span class="ok">taken</span>` : html`<span class="bad">${n.detail ?? 'failed'}</span>`}</dd>`,
)}
${transfers.map((t) => html`<dt>copied by <code>${t.client}</code></dt><dd>${formatDuration(t.age)} ago: ${t.mode} transfer at serial ${t.serial}</dd>`)}
</dl>`;
  const delegations =
    z.delegations.length === 0
      ? ''
      : html`<dl class="kv delegations">
${z.delegations.map((d) => html`<dt>delegates <code>${d.name}</code></dt><dd>to ${codes(d.servers)}, vouching for ${codes(d.ds)}</dd>`)}
</dl>`;
  return html`${fence}${rollover}${peers}${delegations}`;
}

function renderReplication(z: ZoneView): Html {
  const s = z.secondary!;
  const lag =
    s.lag === null
      ? html`<span class="muted">unknown</span>`
      : s.lag === 0
        ? html`<span class="ok">0 (up to date)</span>`
        : s.lag > 0
          ? html`<span class="warn">${s.lag} behind</span>`
          : html`<span class="bad">source is ${-s.lag} behind us</span>`;
  return html`<dl class="kv">
<dt>state</dt><dd>${
    s.expired
      ? html`<span class="badge bad">expired</span> ${z.unavailable ?? ''}`
      : s.lastError !== null
        ? html`<span class="badge warn">serving its last good copy</span> <span class="muted">(its last check failed: see below)</span>`
        : html`<span class="badge ok">serving</span>`
  }</dd>
<dt>sources</dt><dd>${codes(s.sources)}</dd>
<dt>last good check</dt><dd>${s.lastSuccess === null ? html`<span class="muted">never</span>` : html`${formatDuration(s.lastSuccessAge ?? 0)} ago <span class="muted">(${formatTime(Math.floor(s.lastSuccess / 1000))})</span>`}</dd>
<dt>last error</dt><dd class="last-error">${s.lastError === null ? html`<span class="muted">none</span>` : html`<span class="bad">${s.lastError}</span>`}</dd>
<dt>primary serial</dt><dd>${s.primarySerial ?? html`<span class="muted">not checked yet</span>`}</dd>
<dt>lag</dt><dd>${lag}</dd>
${s.transfers ? html`<dt>transfers</dt><dd>${s.transfers.full} full, ${s.transfers.incremental} incremental, ${s.transfers.failed} failed</dd>` : ''}
</dl>`;
}

/** The result of a lookup (also sent alone as `?fragment=lookup` to the page's script). */
export function renderLookup(view: LookupView, now: number): string {
  if (view.noResolver) {
    return html`<div class="notice" role="alert" data-outcome="no_resolver">Cannot look up <code>${view.input}</code>: this server does not run the resolver role.</div>`
      .value;
  }
  if (view.error) {
    const hint = HINTS[view.error.code];
    return html`<div class="error" role="alert" data-outcome="error" data-code="${view.error.code}">
<p><strong>Lookup of <code>${view.input}</code> failed: <code>${view.error.code}</code></strong></p>
<p>${view.error.message}</p>
${hint ? html`<p class="muted">${hint}</p>` : ''}
</div>`.value;
  }
  if (view.bridged) return renderBridged(view.bridged).value;
  return renderChain(view.result!, now).value;
}

/** A handle resolved by the WebFinger bridge: what its host said, plainly marked as not verified. */
function renderBridged(b: BridgedView): Html {
  return html`<section class="result" data-outcome="webfinger" aria-label="Result of the lookup">
<p class="summary"><span class="badge warn">not verified</span> <code>${b.handle}</code> lives at <code class="endpoint">${b.endpoint}</code>, according to its host's WebFinger</p>
<p class="muted">The host publishes no idns zone, so nothing here is signed: the answer is only as good as the host's HTTPS. TTL ${b.ttl} s.</p>
<dl class="kv">
<dt>subject</dt><dd><code>${b.subject}</code></dd>
<dt>aliases</dt><dd>${b.aliases.length ? b.aliases.map((a, j) => html`${j ? ', ' : ''}<code>${a}</code>`) : html`<span class="muted">none</span>`}</dd>
${b.profile ? html`<dt>profile page</dt><dd><code>${b.profile}</code></dd>` : ''}
</dl>
</section>`;
}

function renderChain(c: ChainView, now: number): Html {
  const summary =
    c.status === 'found'
      ? html`<p class="summary"><span class="badge ok">verified</span> <code>${c.handle}</code> lives at <code class="endpoint">${c.record.type === 'handle' ? c.record.endpoint : ''}</code></p>`
      : html`<p class="summary"><span class="badge warn">verified denial</span> <code>${c.handle}</code> does not exist: zone <code>${c.zone}</code> signed a proof of non-existence.</p>`;
  const items: Html[] = [];
  c.steps.forEach((step, i) => {
    items.push(renderStep(step, i, now, c.cached));
    if (step.delegates) {
      items.push(
        html`<li class="link">zone <code>${step.zone}</code> delegates <code>${step.delegates.name}</code> to ${step.delegates.servers.length} server${step.delegates.servers.length === 1 ? '' : 's'}, vouching for key${step.delegates.ds.length === 1 ? '' : 's'} ${step.delegates.ds.map((d, j) => html`${j ? ', ' : ''}<code>${d}</code>`)}</li>`,
      );
    }
  });
  items.push(html`<li class="link">zone <code>${c.zone}</code> signs the ${c.record.type === 'handle' ? 'handle record' : 'denial'}</li>`);
  items.push(renderFinal(c.record, now));
  return html`<section class="result" data-outcome="${c.status}" aria-label="Result of the lookup">
${summary}
<p class="muted">TTL left: <strong class="ttl">${c.ttlLeft} s</strong>${c.cached ? html` <span class="badge cached">from this resolver's cache</span>` : ''}${c.stale ? html` <span class="badge warn">stale: served from expired cache because the zone's servers failed</span>` : ''} · whole chain valid until ${expiry(c.exp, now)}</p>
<h3>Chain of trust</h3>
<ol class="chain">
${items}
</ol>
</section>`;
}

function renderStep(step: ChainStep, i: number, now: number, cached: boolean): Html {
  const answered =
    step.answeredBy.kind === 'server' && cached
      ? html`<span class="muted">this resolver's cache (the walk that filled it asked</span> <code class="server">${step.answeredBy.url}</code><span class="muted">)</span>`
      : step.answeredBy.kind === 'server'
        ? html`<code class="server">${step.answeredBy.url}</code> <span class="muted">(${step.answeredBy.rttMs} ms)</span>`
        : step.answeredBy.kind === 'upstream'
          ? html`the upstream resolver <code class="server">${step.answeredBy.url}</code> <span class="muted">(its proof checked here)</span>`
          : html`<span class="muted">known from this resolver's cache of zone cuts (server not recorded)</span>`;
  const v = step.vouchedBy;
  const trusted =
    v.kind === 'anchor'
      ? html`<strong>trust anchor</strong> ${v.via === 'configured' ? 'configured on this server' : html`found by discovery, <span class="anchor">${v.words}</span>`}${v.thumbprints.length ? html`: ${v.thumbprints.map((t, j) => html`${j ? ', ' : ''}<code>${t}</code>`)}` : ''}${v.thumbprints.includes(step.signedBy) ? html` <span class="ok">✓ matches</span>` : ''}`
      : html`the delegation from <code>${v.parent}</code> (signed by key <code>${v.signedBy}</code>, valid until ${expiry(v.exp, now)}) lists ds ${v.ds.map((d, j) => html`${j ? ', ' : ''}<code>${d}</code>`)}${v.ds.includes(step.signedBy) ? html` <span class="ok">✓ matches</span>` : ''}`;
  return html`<li class="step" data-step-zone="${step.zone}">
<h3>${i + 1}. zone <code class="zone-name">${step.zone}</code>${step.zone === '.' ? html` <span class="muted">(the root)</span>` : ''}</h3>
<dl class="kv">
<dt>answered by</dt><dd>${answered}</dd>
<dt>zone record signed by</dt><dd>key <code class="kid">${step.signedBy}</code> <span class="muted">· serial ${step.serial}</span></dd>
<dt>key trusted via</dt><dd>${trusted}</dd>
<dt>zone keys</dt><dd>${step.zoneKeys.map((k, j) => html`${j ? ', ' : ''}<code>${k}</code>`)}</dd>
<dt>signature expires</dt><dd>${expiry(step.exp, now)}</dd>
</dl>
</li>`;
}

function renderFinal(r: FinalRecord, now: number): Html {
  if (r.type === 'handle') {
    return html`<li class="final handle" data-record="handle">
<h3>Handle record <code>${r.handle}</code></h3>
<dl class="kv">
<dt>endpoint</dt><dd><code class="endpoint">${r.endpoint}</code></dd>
<dt>keys</dt><dd>${codes(r.keys, 'handle-key')}</dd>
<dt>history</dt><dd>follows from its history (${r.changes} entr${r.changes === 1 ? 'y' : 'ies'}, each checked); its registration is <code class="genesis">${r.genesis}</code>${r.operatorAsserted ? html` <span class="badge warn operator-asserted">operator-asserted: set by the zone's operator (an import or a court-ordered transfer), not signed by the handle's owner</span>` : html` <span class="ok">✓ signed by its owner</span>`}</dd>
<dt>signed by</dt><dd>key <code class="kid">${r.signedBy}</code> of zone <code>${r.zone}</code> <span class="muted">· serial ${r.serial}</span></dd>
<dt>record TTL</dt><dd>${r.ttl} s</dd>
<dt>signature expires</dt><dd>${expiry(r.exp, now)}</dd>
</dl>
</li>`;
  }
  return html`<li class="final denial" data-record="denial">
<h3>Denial: the handle does not exist</h3>
<dl class="kv">
<dt>range</dt><dd>the handle's name hash lies strictly between <code>${r.after ?? '(start of hash space)'}</code> and <code>${r.next ?? '(end of hash space)'}</code>, where zone <code>${r.zone}</code> signed the complete list of its name hashes (${r.hashes}), and this one is not among them</dd>
${r.noCut > 0 ? html`<dt>no delegation between</dt><dd>${r.noCut} more signed denial${r.noCut === 1 ? '' : 's'} prove no name between the zone and the host is a delegated zone</dd>` : ''}
<dt>signed by</dt><dd>key <code class="kid">${r.signedBy}</code> of zone <code>${r.zone}</code> <span class="muted">· serial ${r.serial}</span></dd>
<dt>denial TTL</dt><dd>${r.ttl} s</dd>
<dt>signature expires</dt><dd>${expiry(r.exp, now)}</dd>
</dl>
</li>`;
}
