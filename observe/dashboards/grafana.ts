// A typed subset of Grafana's dashboard JSON model (schemaVersion 39) and small builders, so the
// dashboards are code: one function call per panel, units and layout checked by the compiler.
// Grafana reads the JSON these produce; `expect` (the tests' sanity bounds) is stripped on export.

export type Unit = 'percentunit' | 'reqps' | 's' | 'bytes' | 'short' | 'ops' | 'dtdurations' | 'none';

/** What a query must return in a healthy mesh (checked by test/observe/dashboards.test.ts). */
export interface Expect {
  min?: number;
  max?: number;
  /** The target is a latency percentile: within a panel, higher quantiles must not be lower. */
  quantile?: number;
  /** The metric cannot have series in the local mesh (why); the query must still be valid. */
  notLocal?: string;
}

export interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  format?: 'time_series' | 'table';
  range?: boolean;
  datasource: DataSourceRef;
  expect?: Expect;
}

export interface DataSourceRef {
  type: 'prometheus';
  uid: '${datasource}';
}

export const DS: DataSourceRef = { type: 'prometheus', uid: '${datasource}' };

export interface GridPos {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Panel {
  id: number;
  type: 'timeseries' | 'stat' | 'table' | 'row';
  title: string;
  description?: string;
  gridPos: GridPos;
  datasource?: DataSourceRef;
  targets?: Target[];
  fieldConfig?: { defaults: { unit?: Unit; min?: number; max?: number; decimals?: number; custom?: Record<string, unknown> }; overrides: unknown[] };
  options?: Record<string, unknown>;
  collapsed?: boolean;
  panels?: Panel[];
}

export interface Variable {
  name: string;
  label: string;
  type: 'datasource' | 'query';
  /** A string: every Grafana version reads it (newer ones migrate it to their query object). */
  query: string;
  definition?: string;
  datasource?: DataSourceRef;
  refresh?: 1 | 2;
  includeAll?: boolean;
  allValue?: string;
  multi?: boolean;
  sort?: number;
  current?: Record<string, unknown>;
  hide?: 0 | 2;
  regex?: string;
}

export interface Dashboard {
  uid: string;
  title: string;
  description: string;
  tags: string[];
  timezone: 'browser';
  editable: true;
  graphTooltip: 1;
  schemaVersion: 39;
  version: 1;
  refresh: string;
  time: { from: string; to: string };
  templating: { list: Variable[] };
  annotations: { list: unknown[] };
  links: unknown[];
  panels: Panel[];
}

export const datasourceVariable: Variable = { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus', current: {}, hide: 0 };

/** A query variable over a label's values (Prometheus `label_values`), "All" = any value. */
export function labelVariable(name: string, label: string, metricSelector: string, labelName: string, opts: { includeAll?: boolean } = {}): Variable {
  const q = `label_values(${metricSelector}, ${labelName})`;
  return {
    name,
    label,
    type: 'query',
    datasource: DS,
    query: q,
    definition: q,
    refresh: 2,
    sort: 1,
    includeAll: opts.includeAll ?? false,
    ...(opts.includeAll ? { allValue: '.*' } : {}),
    multi: opts.includeAll ?? false,
    current: {},
    hide: 0,
  };
}

export interface QuerySpec {
  expr: string;
  legend?: string;
  expect?: Expect;
  /** A table of the current values (instant query). */
  instant?: boolean;
}

export interface PanelSpec {
  title: string;
  description?: string;
  unit: Unit;
  queries: QuerySpec[];
  w?: number;
  h?: number;
  min?: number;
  max?: number;
}

const REF = 'ABCDEFGHIJKLMNOP';

function targets(queries: QuerySpec[]): Target[] {
  return queries.map((q, i) => ({
    refId: REF[i]!,
    expr: q.expr,
    ...(q.legend !== undefined ? { legendFormat: q.legend } : {}),
    ...(q.instant ? { instant: true, range: false, format: 'table' as const } : {}),
    datasource: DS,
    ...(q.expect ? { expect: q.expect } : {}),
  }));
}

type Placed = Omit<Panel, 'id' | 'gridPos'> & { w: number; h: number };

export const timeseries = (p: PanelSpec): Placed => ({
  type: 'timeseries',
  title: p.title,
  ...(p.description ? { description: p.description } : {}),
  datasource: DS,
  targets: targets(p.queries),
  fieldConfig: { defaults: { unit: p.unit, ...(p.min !== undefined ? { min: p.min } : {}), ...(p.max !== undefined ? { max: p.max } : {}), custom: { lineWidth: 1, fillOpacity: 10, showPoints: 'never' } }, overrides: [] },
  options: { legend: { displayMode: 'table', placement: 'bottom', calcs: ['mean', 'max', 'lastNotNull'] }, tooltip: { mode: 'multi', sort: 'desc' } },
  w: p.w ?? 12,
  h: p.h ?? 8,
});

export const stat = (p: PanelSpec): Placed => ({
  type: 'stat',
  title: p.title,
  ...(p.description ? { description: p.description } : {}),
  datasource: DS,
  targets: targets(p.queries),
  fieldConfig: { defaults: { unit: p.unit, decimals: p.unit === 'percentunit' ? 2 : 1, ...(p.min !== undefined ? { min: p.min } : {}), ...(p.max !== undefined ? { max: p.max } : {}) }, overrides: [] },
  options: { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'area', textMode: 'auto' },
  w: p.w ?? 6,
  h: p.h ?? 4,
});

export const table = (p: PanelSpec): Placed => ({
  type: 'table',
  title: p.title,
  ...(p.description ? { description: p.description } : {}),
  datasource: DS,
  targets: targets(p.queries.map((q) => ({ ...q, instant: true }))),
  fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
  options: { showHeader: true, cellHeight: 'sm' },
  w: p.w ?? 12,
  h: p.h ?? 8,
});

export const row = (title: string): Placed => ({ type: 'row', title, collapsed: false, panels: [], w: 24, h: 1 });

/** Lays panels out left to right, wrapping at 24 columns; rows start a new line. Ids from 1. */
export function layout(items: Placed[]): Panel[] {
  const out: Panel[] = [];
  let x = 0;
  let y = 0;
  let lineH = 0;
  for (const [i, { w, h, ...p }] of items.entries()) {
    if (p.type === 'row' || x + w > 24) {
      y += lineH;
      x = 0;
      lineH = 0;
    }
    out.push({ id: i + 1, ...p, gridPos: { x, y, w, h } });
    x += w;
    lineH = Math.max(lineH, h);
    if (p.type === 'row') {
      y += h;
      x = 0;
      lineH = 0;
    }
  }
  return out;
}

export function dashboard(d: { uid: string; title: string; description: string; variables: Variable[]; panels: Placed[] }): Dashboard {
  return {
    uid: d.uid,
    title: d.title,
    description: d.description,
    tags: ['meshlet'],
    timezone: 'browser',
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: { from: 'now-1h', to: 'now' },
    templating: { list: [datasourceVariable, ...d.variables] },
    annotations: { list: [] },
    links: [{ title: 'meshlet dashboards', type: 'dashboards', tags: ['meshlet'], asDropdown: true }],
    panels: layout(d.panels),
  };
}

/** Every query of a dashboard with its panel (rows included), for tests and tools. */
export function queriesOf(d: Dashboard): Array<{ panel: Panel; target: Target }> {
  const out: Array<{ panel: Panel; target: Target }> = [];
  const walk = (ps: Panel[]) => {
    for (const p of ps) {
      for (const target of p.targets ?? []) out.push({ panel: p, target });
      walk(p.panels ?? []);
    }
  };
  walk(d.panels);
  return out;
}

/** The JSON Grafana imports: test-only `expect` fields removed. */
export const exportJson = (d: Dashboard): string => JSON.stringify(d, (k, v: unknown) => (k === 'expect' ? undefined : v), 2) + '\n';
