// Every dashboard meshlet ships, with the file it is exported to.
import type { Dashboard } from './grafana.ts';

export interface DashboardFile {
  file: string;
  dashboard: Dashboard;
}

export const DASHBOARDS: DashboardFile[] = [];
