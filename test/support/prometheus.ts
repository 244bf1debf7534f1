/** One sample of a Prometheus text exposition. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed Prometheus text exposition (format 0.0.4): each family's TYPE and its samples. */
export interface Exposition {
  types: Map<string, string>;
  samples: Sample[];
}

// Names and values as the text format 0.0.4 allows them (label names are matched case-sensitively, values case-insensitively).
const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:\\\\.|[^"\\\\\\n])*"';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?,?\\})? ([+-]?(?:[0-9.]+(?:e[+-]?[0-9]+)?|nan|inf))( -?[0-9]+)?$`, 'i');
const LABEL_PARTS = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\\n])*)"/g;
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SUFFIXES: Record<string, readonly string[]> = { histogram: ['_bucket', '_sum', '_count'], summary: ['', '_sum', '_count'] };

/**
 * Parses the text strictly and throws at the first thing Prometheus would reject: a malformed line, a
 * family typed twice, a sample before or outside its family's TYPE, a histogram whose buckets fall or
 * whose +Inf bucket differs from its count.
 */
export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  let family: { name: string; type: string } | null = null;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    const t = TYPE.exec(line);
    if (t) {
      if (types.has(t[1]!)) throw new Error(`family typed twice: ${line}`);
      types.set(t[1]!, t[2]!);
      family = { name: t[1]!, type: t[2]! };
      continue;
    }
    if (line.startsWith('#')) throw new Error(`unexpected comment: ${line}`);
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`malformed sample: ${line}`);
    const name = m[1]!;
    const suffixes = family ? (SUFFIXES[family.type] ?? ['']) : [];
    if (!family || !suffixes.some((s) => name === family!.name + s)) throw new Error(`sample outside its family: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL_PARTS)) {
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    // Prometheus parses values as Go's ParseFloat does: NaN and Inf in any case (prom-client writes `Nan`).
    const v = m[3]!.toLowerCase();
    samples.push({ name, labels, value: v === 'nan' ? NaN : v.endsWith('inf') ? (v.startsWith('-') ? -Infinity : Infinity) : Number(v) });
  }
  checkHistograms(types, samples);
  return { types, samples };
}

function checkHistograms(types: Map<string, string>, samples: Sample[]): void {
  for (const [name, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, { buckets: Sample[]; count?: number }>();
    const keyOf = (s: Sample) => JSON.stringify(Object.entries(s.labels).filter(([k]) => k !== 'le'));
    for (const s of samples) {
      const entry = series.get(keyOf(s)) ?? { buckets: [] };
      if (s.name === `${name}_bucket`) entry.buckets.push(s);
      else if (s.name === `${name}_count`) entry.count = s.value;
      else continue;
      series.set(keyOf(s), entry);
    }
    for (const [key, { buckets, count }] of series) {
      for (let i = 1; i < buckets.length; i++) if (buckets[i]!.value < buckets[i - 1]!.value) throw new Error(`${name}${key}: buckets fall`);
      const inf = buckets.find((b) => b.labels.le === '+Inf');
      if (!inf || inf.value !== count) throw new Error(`${name}${key}: +Inf bucket ${inf?.value} differs from count ${count}`);
    }
  }
}

/** The value of the one sample with this name and exactly these labels, or undefined. */
export function sampleValue(e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels);
  return e.samples.find((s) => s.name === name && Object.keys(s.labels).length === want.length && want.every(([k, v]) => s.labels[k] === v))?.value;
}
