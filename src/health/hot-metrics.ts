/**
 * A counter and a histogram for the per-task path, registered on a prom-client Registry like its own metrics.
 *
 * prom-client's `labels(...).inc()` / `.observe()` re-validates and re-hashes the labels on every call (about
 * 1 µs, most of a no-op task's cost). Here a caller keeps the series of its label set and an observation is a few
 * array writes; prom-client still formats the exposition (the registry calls `get()` at scrape time).
 */
type Labels = Record<string, string>;

/** One line of the exposition, as prom-client's registry formats it. */
interface Value {
  readonly metricName?: string;
  readonly labels: Record<string, string | number>;
  readonly value: number;
}

/** What prom-client's registry reads from a metric at scrape time. */
export interface Snapshot {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'sum';
  readonly values: Value[];
}

/** One label set's figures. Callers keep it and pass it back, so the labels are hashed once. */
export interface Series {
  readonly labels: Labels;
  count: number;
  sum: number;
  /** Histogram only: observations per bucket (not cumulative), the last one for +Inf. */
  readonly buckets: Float64Array | undefined;
}

abstract class HotMetric<T extends 'counter' | 'histogram'> {
  readonly name: string;
  readonly help: string;
  readonly type: T;
  readonly aggregator = 'sum' as const;
  readonly labelNames: readonly string[];
  protected readonly all = new Map<string, Series>();

  constructor(name: string, help: string, type: T, labelNames: readonly string[]) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.labelNames = labelNames;
  }

  /** The series of a label set (made on first use); `key` identifies the set, e.g. its values joined. */
  series(key: string, labels: Labels): Series {
    let s = this.all.get(key);
    if (!s) {
      s = { labels, count: 0, sum: 0, buckets: this.newBuckets() };
      this.all.set(key, s);
    }
    return s;
  }

  /** Zeroes every series in place (prom-client's `registry.resetMetrics()`): callers keep their series and go on counting. */
  reset(): void {
    for (const s of this.all.values()) {
      s.count = 0;
      s.sum = 0;
      s.buckets?.fill(0);
    }
  }

  protected abstract newBuckets(): Float64Array | undefined;
}

export class HotCounter extends HotMetric<'counter'> {
  constructor(name: string, help: string, labelNames: readonly string[]) {
    super(name, help, 'counter', labelNames);
  }

  inc(series: Series): void {
    series.count++;
  }

  async get(): Promise<Snapshot> {
    const values: Value[] = [];
    for (const s of this.all.values()) values.push({ labels: s.labels, value: s.count });
    return { name: this.name, help: this.help, type: 'counter', aggregator: this.aggregator, values };
  }

  protected newBuckets(): undefined {
    return undefined;
  }
}

export class HotHistogram extends HotMetric<'histogram'> {
  readonly bounds: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[], bounds: readonly number[]) {
    super(name, help, 'histogram', labelNames);
    this.bounds = bounds;
  }

  observe(series: Series, value: number): void {
    const { bounds } = this;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    series.buckets![i]!++;
    series.sum += value;
    series.count++;
  }

  async get(): Promise<Snapshot> {
    const values: Value[] = [];
    for (const s of this.all.values()) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += s.buckets![i]!;
        const le = i < this.bounds.length ? this.bounds[i]! : '+Inf';
        values.push({ metricName: `${this.name}_bucket`, labels: { ...s.labels, le }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: this.aggregator, values };
  }

  protected newBuckets(): Float64Array {
    return new Float64Array(this.bounds.length + 1);
  }
}
