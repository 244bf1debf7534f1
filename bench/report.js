// The benchmark's rows and the files written from them: bench/RESULTS.md for a full run, bench/QUICK.md
// (each row beside the committed quick-mode reference, bench/quick-reference.json) for a quick run.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fmt, root } from './lib.js';

export const REFERENCE_FILE = join(root, 'bench/quick-reference.json');
/** Worse than the reference by more than this fraction is a regression. */
const TOLERANCE = 0.2;

/** How rows are marked against the reference, for the reports' text. */
export const TOLERANCE_NOTE = `A row is marked **REGRESSED** when a figure it is compared on is worse than the
reference's by more than 20% (higher-is-better figures below 80% of it, lower-is-better ones above
120%; figures near zero get a small absolute allowance). Rows with an in-run baseline are compared on
their ratio to it, since absolute figures move with the machine's load.`;

/** The reports' paragraph on how the figures were measured. */
export function methodOf(opts) {
  return `Throughput figures are medians of ${opts.runs} runs of ${opts.duration} s with 64 connections from a separate autocannon
process (bench/load.js); the baseline is a bare node:http server (bench/baseline-server.js) answering a
fixed body of the same size, measured interleaved with ours in the same run. Zone size in this run:
${fmt(opts.handles)} handles (the targets speak of 1,000,000; the transfer target is scaled to the zone size).
Target 7: ${fmt(opts.notifyChanges)} registrations from the load generator, ${opts.notifyRuns} runs, the secondary's
GET /v1/zones polled every 10 ms; then 100 registrations from 4 clients, ${opts.changeRuns} runs alternating
between the two zones. Target 8: ${fmt(opts.cachedHandles)} handles looked up 100 a request.`;
}

/** The closing line of a quick report: which rows regressed, if any. */
export function regressionSummary(regressed, compared) {
  if (regressed.length === 0) return compared ? 'No row regressed by more than 20%.' : '';
  return `REGRESSED by more than 20%: ${regressed.map((r) => `target ${r.target} (${r.name})`).join('; ')}.`;
}

/**
 * The rows of one run. Each row carries, beside the text of the table, the figures a later quick run is
 * compared on (`compare`): `{ key: { value, better: 'higher'|'lower', slack? } }`. A row with an in-run
 * baseline is compared on its ratio to that baseline, since absolute figures move with the machine's
 * load; `slack` is an absolute amount a figure near zero may move by before it counts (memory growth of
 * a few MB, a lag of a few hundred ms).
 */
export class Rows {
  rows = [];

  /** Adds a row: { target, id, name, figure, baseline?, ratio?, goal, met, compare }. */
  add(row) {
    this.rows.push({ baseline: '-', ratio: '-', ...row });
    process.stderr.write(
      `[${row.target}] ${row.name}: ${row.figure}${row.ratio && row.ratio !== '-' ? ` (${row.ratio})` : ''}; target ${row.goal}: ${row.met ? 'met' : 'not met'}\n`,
    );
  }

  /** The rows ordered by target number, in the order measured within a target. */
  sorted() {
    return this.rows
      .map((r, i) => ({ r, i }))
      .sort((a, b) => a.r.target - b.r.target || a.i - b.i)
      .map(({ r }) => r);
  }
}

/** The figures to keep as the quick-mode reference. */
export function referenceOf(rows, meta) {
  return {
    ...meta,
    rows: Object.fromEntries(
      rows.sorted().map((r) => [r.id, { name: r.name, figures: Object.fromEntries(Object.entries(r.compare).map(([k, v]) => [k, v.value])) }]),
    ),
  };
}

export function readReference() {
  return existsSync(REFERENCE_FILE) ? JSON.parse(readFileSync(REFERENCE_FILE, 'utf8')) : null;
}

/** Compares one row with the reference: { text, regressed, status }. */
export function compareRow(row, reference) {
  const ref = reference?.rows?.[row.id]?.figures;
  if (!ref) return { text: 'no reference', regressed: false, status: 'new' };
  const parts = [];
  let regressed = false;
  let improved = false;
  for (const [key, { value, better, slack = 0 }] of Object.entries(row.compare)) {
    const was = ref[key];
    if (typeof was !== 'number') {
      parts.push(`${key} ${show(value)} (no reference)`);
      continue;
    }
    const change = was === 0 ? 0 : value / was - 1;
    const worse = better === 'higher' ? value < was * (1 - TOLERANCE) - slack : value > was * (1 + TOLERANCE) + slack;
    const betterBy = better === 'higher' ? value > was * (1 + TOLERANCE) + slack : value < was * (1 - TOLERANCE) - slack;
    regressed ||= worse;
    improved ||= betterBy;
    parts.push(`${key} ${show(value)} vs ${show(was)} (${change >= 0 ? '+' : ''}${(change * 100).toFixed(0)}%${worse ? ', worse' : ''})`);
  }
  return { text: parts.join('; '), regressed, status: regressed ? '**REGRESSED**' : improved ? 'better' : 'ok' };
}

const show = (v) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en') : Number(v.toPrecision(3)).toString());

/** The markdown table of a full run. */
export function fullTable(rows) {
  return [
    '| # | benchmark | figure (median of runs) | baseline (same run) | ratio | target | met |',
    '|---|---|---|---|---|---|---|',
    ...rows.sorted().map((r) => `| ${r.target} | ${r.name} | ${r.figure} | ${r.baseline} | ${r.ratio} | ${r.goal} | ${r.met ? 'yes' : 'no'} |`),
  ].join('\n');
}

/** The markdown table of a quick run, each row beside the reference; and the rows that regressed. */
export function quickTable(rows, reference, heading = 'compared with the reference') {
  const regressed = [];
  const lines = rows.sorted().map((r) => {
    const c = compareRow(r, reference);
    if (c.regressed) regressed.push(r);
    return `| ${r.target} | ${r.name} | ${r.figure} | ${r.baseline} | ${r.ratio} | ${r.goal} | ${r.met ? 'yes' : 'no'} | ${c.text} | ${c.status} |`;
  });
  return {
    table: [
      `| # | benchmark | figure (median of runs) | baseline (same run) | ratio | target | met | ${heading} | vs reference |`,
      '|---|---|---|---|---|---|---|---|---|',
      ...lines,
    ].join('\n'),
    regressed,
  };
}

/** Writes a file, saying where. */
export function write(file, text) {
  writeFileSync(file, text);
  process.stderr.write(`bench: wrote ${file}\n`);
}
