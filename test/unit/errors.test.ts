// Upstream errors as proxy errors: a failed certificate check is told in the mesh's words (the
// trust bundle is the only trust), never with Node's advice to use the system CA store.
import t from 'tap';
import { fromUpstreamError } from '../../proxy/errors.ts';

const HINT = '; if the root CA is installed locally, try running Node.js with --use-system-ca';
const tlsError = (code: string, message: string) => Object.assign(new Error(message), { code });

t.test('a certificate check that failed: what failed, by code, and the code', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', `unable to verify the first certificate${HINT}`, "TLS failed: the endpoint's certificate is not signed by the mesh's trust bundle (UNABLE_TO_VERIFY_LEAF_SIGNATURE)"],
    ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'unable to get local issuer certificate', "TLS failed: the endpoint's certificate is not signed by the mesh's trust bundle (UNABLE_TO_GET_ISSUER_CERT_LOCALLY)"],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', `self-signed certificate${HINT}`, "TLS failed: the endpoint's certificate is self-signed, not signed by the mesh's trust bundle (DEPTH_ZERO_SELF_SIGNED_CERT)"],
    ['SELF_SIGNED_CERT_IN_CHAIN', `self-signed certificate in certificate chain${HINT}`, "TLS failed: the endpoint's certificate chains to a root that is not in the mesh's trust bundle (SELF_SIGNED_CERT_IN_CHAIN)"],
    ['CERT_HAS_EXPIRED', 'certificate has expired', 'TLS failed: a certificate the endpoint presented has expired (CERT_HAS_EXPIRED)'],
    ['CERT_NOT_YET_VALID', 'certificate is not yet valid', 'TLS failed: a certificate the endpoint presented is not valid yet (is a clock behind?) (CERT_NOT_YET_VALID)'],
  ];
  for (const [code, message, want] of cases) {
    const e = fromUpstreamError(tlsError(code, message), false);
    t.equal(e.code, 'tls-failed', `${code}: tls-failed`);
    t.equal(e.message, want, code);
    t.equal(e.beforeRequest, true, `${code}: nothing reached the app`);
  }
});

t.test('another TLS failure keeps its own text, without the system-CA hint', async (t) => {
  const e = fromUpstreamError(tlsError('UNABLE_TO_GET_CRL', `unable to get certificate CRL${HINT}`), false);
  t.equal(e.code, 'tls-failed');
  t.equal(e.message, 'TLS failed: unable to get certificate CRL');
  t.equal(fromUpstreamError(tlsError('ERR_SSL_WRONG_VERSION_NUMBER', 'wrong version number'), false).message, 'TLS failed: wrong version number', 'no hint: unchanged');
});
