// Every dashboard meshlet ships, with the file it is exported to (manifests/grafana/).
import { controlPlane } from './control-plane.ts';
import { edge } from './edge.ts';
import type { Dashboard } from './grafana.ts';
import { overview } from './overview.ts';
import { proxy } from './proxy.ts';
import { service } from './service.ts';

export interface DashboardFile {
  file: string;
  dashboard: Dashboard;
}

export const DASHBOARDS: DashboardFile[] = [
  { file: 'meshlet-overview.json', dashboard: overview },
  { file: 'meshlet-service.json', dashboard: service },
  { file: 'meshlet-edge.json', dashboard: edge },
  { file: 'meshlet-proxy.json', dashboard: proxy },
  { file: 'meshlet-control-plane.json', dashboard: controlPlane },
];
