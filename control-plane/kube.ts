// Reaching the Kubernetes API from the control plane and the CLI: credentials from --kubeconfig,
// or the default chain (KUBECONFIG, ~/.kube/config, in-cluster). Guarantees: the client library is
// loaded only by callers that need it (it costs ~0.7 s of start-up).

import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AuthenticationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';

export interface KubeClients {
  kc: KubeConfig;
  core: CoreV1Api;
  authn: AuthenticationV1Api;
  /** For messages: the API server URL. */
  server: string;
}

/** True inside a Pod (the kubelet sets these for every container). */
export function inCluster(env: NodeJS.ProcessEnv): boolean {
  return Boolean(env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT);
}

export async function kubeClients(kubeconfig: string | undefined): Promise<KubeClients> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  const envFiles = (process.env.KUBECONFIG ?? '').split(path.delimiter).filter(Boolean);
  const homeFile = path.join(os.homedir(), '.kube', 'config');
  if (!kubeconfig && !inCluster(process.env) && !envFiles.some((f) => existsSync(f)) && !existsSync(homeFile)) {
    // loadFromDefault would fall back to http://localhost:8080 and fail later with a riddle.
    throw new Error(`no Kubernetes credentials found (KUBECONFIG${envFiles.length ? ` ${envFiles.join(path.delimiter)}` : ' unset'}, ${homeFile} missing, not in a cluster)`);
  }
  try {
    if (kubeconfig) kc.loadFromFile(kubeconfig);
    else kc.loadFromDefault();
  } catch (e) {
    throw new Error(`cannot load Kubernetes credentials from ${kubeconfig ?? 'the default locations (KUBECONFIG, ~/.kube/config, in-cluster)'}: ${(e as Error).message}`, { cause: e });
  }
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error(`no Kubernetes cluster in ${kubeconfig ?? 'the default kubeconfig'} (pass --kubeconfig FILE)`);
  return { kc, core: kc.makeApiClient(k8s.CoreV1Api), authn: kc.makeApiClient(k8s.AuthenticationV1Api), server };
}
