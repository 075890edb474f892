// A listener's answer to a connection that is not HTTP/1 (http1/first-bytes.ts found TLS, the
// HTTP/2 preface or other bytes): what the user is told to do, and the bytes its client reads.
// Guarantees: pure; the message names the TLS server name when there is one, and the fix.
import type { Foreign } from '../http1/first-bytes.ts';
import { TLS_HANDSHAKE_FAILURE, http2Refusal } from '../http1/first-bytes.ts';
import type { Direction } from './exchange.ts';

const OUTBOUND_BYPASS = 'let it bypass the proxy (config.meshlet.io/skip-outbound-ports or skip-outbound-cidrs)';
const INBOUND_BYPASS = 'let its port bypass the proxy (config.meshlet.io/skip-inbound-ports)';

/** What happened and what to do, for /errors (the access log has the code). */
export function unsupportedProtocolMessage(what: Foreign, direction: Direction): string {
  const outbound = direction === 'outbound';
  const who = outbound ? 'the app' : 'a client';
  const where = outbound ? 'the outbound proxy, which proxies plaintext HTTP (HTTP/1.1 and HTTP/2) only' : 'the inbound proxy, which takes plaintext HTTP here';
  const bypass = outbound ? OUTBOUND_BYPASS : INBOUND_BYPASS;
  switch (what.protocol) {
    case 'tls': {
      const name = what.serverName === undefined ? 'no server name' : `server name ${what.serverName}`;
      const fix = outbound ? `${bypass} or call it over plain HTTP` : `if the app serves TLS itself, ${bypass}`;
      return `${who} sent TLS (${name}) to ${where}: ${fix}`;
    }
    case 'http2':
      return `${who} sent HTTP/2 with prior knowledge (as gRPC clients do) to ${where}, a listener built without HTTP/2: make the client use HTTP/1.1, or ${bypass}`;
    case 'unknown':
      return `${who} sent bytes that are not HTTP/1 (first bytes ${what.first}) to ${where}: ${bypass}`;
  }
}

/** GOAWAY debug data: short, the client may show it. */
const HTTP2_DEBUG = 'this meshlet listener serves HTTP/1.1 only: use HTTP/1.1, or let this traffic bypass the proxy';

/**
 * The bytes the client reads before the connection closes: a TLS alert for TLS, SETTINGS + GOAWAY
 * (HTTP_1_1_REQUIRED) for HTTP/2; other bytes get the HTTP/1 answer `http400` builds.
 */
export function unsupportedProtocolAnswer(what: Foreign, http400: () => string): Buffer {
  switch (what.protocol) {
    case 'tls':
      return TLS_HANDSHAKE_FAILURE;
    case 'http2':
      return http2Refusal(HTTP2_DEBUG);
    case 'unknown':
      return Buffer.from(http400(), 'latin1');
  }
}
