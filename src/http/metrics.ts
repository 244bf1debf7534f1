import { Counter, Gauge, Registry } from 'prom-client';
import { serialOf } from '../authority/serial.js';
import type { AppContext } from '../context.js';

/** The server's Prometheus metrics. Label values come from route patterns and zone names held here, never from raw input. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status'>;

  constructor(ctx: AppContext) {
    this.requests = new Counter({
      name: 'idns_http_requests_total',
      help: 'HTTP requests by route pattern, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [this.registry],
    });
    new Gauge({
      name: 'idns_zone_serial',
      help: 'Current serial of each zone held here',
      labelNames: ['zone', 'role'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const z of ctx.zones.list()) this.set({ zone: z.name, role: z.role }, serialOf(z.version));
      },
    });
  }
}
