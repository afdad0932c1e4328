/**
 * The wire shapes of the hybridnb server extension (JUPYTER-API.md), mirrored by hand
 * from the pydantic models in `hybridnb/jupyter/models.py`.
 *
 * tests/jupyter/test_labextension.py compares every interface below with the JSON
 * schema that `python -m hybridnb.jupyter.models` prints: a field added, renamed or
 * dropped on one side fails it. Keep one field per line, `name: type;` or `name?: type;`.
 */

/** A record's lifecycle (`hybridnb.state.Status`). */
export type Status =
  | 'pending'
  | 'starting'
  | 'running'
  | 'stopping'
  | 'stopped'
  | 'succeeded'
  | 'failed'
  | 'lost';

/** A notebook job's status. */
export type JobStatus =
  | 'queued'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'cancelled';

export interface ErrorBody {
  error: string;
  field?: string | null;
}

export interface Capacity {
  cpu: number;
  memory: number;
  gpu?: number;
  gpu_type?: string | null;
}

export interface Cost {
  cpu_hour?: number;
  gpu_hour?: number;
  egress_gb?: number;
}

export interface Site {
  name: string;
  tier: string;
  backend: string;
  capacity: Capacity;
  classifications: string[];
  cost: Cost;
}

export interface SiteList {
  sites: Site[];
}

export interface PlanRequest {
  kind?: string;
  cpu?: number;
  gpu?: number;
  memory?: number | string;
  hours?: number;
  data?: string[];
  budget?: number | null;
  deadline?: number | null;
  tiers?: string[] | null;
}

export interface PlanRanked {
  site: string;
  tier: string;
  rank: number;
  score: number;
  cost_usd: number;
  hours: number;
  reasons: string[];
}

export interface PlanRejected {
  site: string;
  tier: string;
  reasons: string[];
  kinds: string[];
}

export interface PlanAnswer {
  chosen: string | null;
  policy: string;
  ranked: PlanRanked[];
  rejected: PlanRejected[];
  explanation: string;
}

export interface Adapt {
  minimum?: number;
  maximum: number;
}

export interface ClusterCreate {
  site: string;
  name?: string | null;
  workers?: number | null;
  threads?: number | null;
  memory?: string | null;
  adapt?: Adapt | null;
}

export interface ClusterPatch {
  workers?: number | null;
  adapt?: Adapt | null;
}

export interface Cluster {
  id: string;
  name: string;
  site: string;
  backend: string | null;
  status: Status;
  started_from: string;
  controllable: boolean;
  host: string;
  owner: string;
  workers?: number | null;
  threads?: number | null;
  memory_bytes?: number | null;
  scheduler_address?: string | null;
  dashboard?: string | null;
  desired?: { [key: string]: unknown } | null;
  applied?: { [key: string]: unknown } | null;
  error?: string | null;
  created_at: number;
}

export interface ClusterList {
  clusters: Cluster[];
}

export interface Run {
  id: string;
  name: string;
  site: string;
  status: Status;
  launcher?: string | null;
  metrics?: { [name: string]: number };
  run_dir?: string | null;
  error?: string | null;
  created_at: number;
}

export interface RunList {
  runs: Run[];
}

export interface Endpoint {
  id: string;
  name: string;
  site: string;
  status: Status;
  url: string | null;
  replicas?: number | null;
  canary_replicas?: number;
  versions?: string[];
  canary_percent?: number;
  p50_ms?: number | null;
  p99_ms?: number | null;
  requests?: number | null;
  desired?: { [key: string]: unknown } | null;
  applied?: { [key: string]: unknown } | null;
  controllable: boolean;
  error?: string | null;
  created_at: number;
}

export interface EndpointList {
  endpoints: Endpoint[];
}

export interface EndpointPatch {
  replicas?: number | null;
  canary_percent?: number | null;
}

export interface Job {
  id: string;
  name: string;
  notebook: string;
  parameters?: { [name: string]: unknown };
  site: string;
  mode: string;
  cluster?: string | null;
  status: JobStatus;
  data?: string[];
  plan?: string;
  started_from?: string;
  owner: string;
  created_at: number;
  started_at?: number | null;
  ended_at?: number | null;
  error?: string | null;
  output?: string | null;
  report?: string | null;
  manifest?: string | null;
  log: string;
}

export interface JobDetail extends Job {
  log_tail?: string;
}

export interface JobList {
  jobs: Job[];
}

export interface JobCreate {
  notebook: string;
  parameters?: { [name: string]: unknown };
  site?: string | null;
  cluster?: string | null;
  timeout?: number | null;
}

export interface Parameter {
  name: string;
  default?: string | null;
  type?: string;
  help?: string;
}

export interface NotebookInfo {
  parameters: Parameter[];
  data?: string[];
  data_parameters?: string[];
  resources?: { [key: string]: unknown };
}

export interface Alert {
  name: string;
  state: string;
  severity: string;
  value?: number | null;
  threshold: string;
  since?: number | null;
  summary?: string;
  labels?: { [name: string]: string };
}

export interface AlertList {
  alerts: Alert[];
}

export interface MetricSeries {
  name: string;
  labels: { [name: string]: string };
  points: [number, number][];
}

export interface MetricsAnswer {
  series: MetricSeries[];
}

export interface Summary {
  clusters: number;
  endpoints: number;
  runs: number;
  jobs_running: number;
  jobs_queued: number;
  alerts_firing: number;
}
