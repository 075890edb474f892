// Reads a tap run's output and prints the test files whose process died by a signal before
// reporting (seen here: a rare SIGSEGV of Node 24 while loading a test file), one per line, but
// only when every failing file is such a crash; any real failure prints nothing (no rerun).
import { readFileSync } from 'node:fs';

const text = readFileSync(process.argv[2] ?? '/dev/stdin', 'utf8');
const failing: Array<{ file: string; signal: string | undefined }> = [];
let current: { file: string; signal: string | undefined } | undefined;
for (const line of text.split('\n')) {
  const top = /^(not )?ok \d+ - (\S+\.test\.ts)\b/.exec(line);
  if (top) {
    current = top[1] ? { file: top[2]!, signal: undefined } : undefined;
    if (current) failing.push(current);
    continue;
  }
  const sig = /^ {2}signal: (SIG[A-Z]+)/.exec(line);
  if (current && sig) current.signal = sig[1];
}
if (failing.length > 0 && failing.every((f) => f.signal !== undefined)) process.stdout.write(failing.map((f) => f.file).join('\n') + '\n');
