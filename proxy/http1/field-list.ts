// Comma-separated field values (RFC 9110 §5.6.1): `a, b,c` holds a, b and c. Used for the
// framing fields (Connection, Transfer-Encoding, Expect) and for route header matches.

function isOws(c: number): boolean {
  return c === 32 || c === 9;
}

/**
 * Is `want` one of the comma-separated, whitespace-trimmed elements of `list`? With `fold`, the
 * comparison ignores case (`want` given in lower case). No allocation unless folding.
 */
export function listHas(list: string, want: string, fold = false): boolean {
  let start = 0;
  while (start <= list.length) {
    let end = list.indexOf(',', start);
    if (end === -1) end = list.length;
    let a = start;
    let b = end;
    while (a < b && isOws(list.charCodeAt(a))) a++;
    while (b > a && isOws(list.charCodeAt(b - 1))) b--;
    if (b - a === want.length && (fold ? list.slice(a, b).toLowerCase() === want : list.startsWith(want, a))) return true;
    start = end + 1;
  }
  return false;
}
