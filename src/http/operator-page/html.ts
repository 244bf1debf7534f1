/**
 * A minimal escaping HTML template: every value interpolated into `html`…`` is escaped unless it is
 * itself the result of `html` (already safe), so escaping is the default rather than something each
 * call site must remember.
 */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML content and (quoted) attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (ch) => ENTITIES[ch]!);
}

function fragment(value: unknown): string {
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map(fragment).join('');
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(value);
}

/** The template tag: static parts verbatim, interpolated values escaped (arrays joined, null/false omitted). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += fragment(values[i]) + (strings[i + 1] ?? '');
  return new Html(out);
}

/** Trusted static markup (constants written in this code base only, never data). */
export function raw(markup: string): Html {
  return new Html(markup);
}
