// The real TokenReviewer: one TokenReview per call against the Kubernetes API server.
// Guarantees: asks for exactly the given audiences; the token is never logged or put in an error.

import type { AuthenticationV1Api } from '@kubernetes/client-node';
import type { TokenReviewer, TokenReviewResult } from './token-reviewer.ts';

export class KubeTokenReviewer implements TokenReviewer {
  readonly #api: AuthenticationV1Api;
  constructor(api: AuthenticationV1Api) {
    this.#api = api;
  }

  async review(token: string, audiences: readonly string[]): Promise<TokenReviewResult> {
    let status;
    try {
      const out = await this.#api.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [...audiences] } },
      });
      status = out.status;
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      throw new Error(`TokenReview failed: ${typeof code === 'number' ? `HTTP ${code} from the API server (the control plane needs create on tokenreviews)` : (e as Error).message}`, { cause: e });
    }
    return {
      authenticated: status?.authenticated === true,
      username: status?.user?.username,
      audiences: status?.audiences,
      error: status?.error,
    };
  }
}
