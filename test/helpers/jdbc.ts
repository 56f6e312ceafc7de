// A real pgjdbc client (Debian's libpostgresql-jdbc-java, installed by scripts/install-deps.sh --test)
// running test/drivers/JdbcSession.java: compiled into a temporary directory, started, read line by line.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const PGJDBC = '/usr/share/java/postgresql.jar';
const SOURCE = fileURLToPath(new URL('../drivers/JdbcSession.java', import.meta.url));
const LINE_TIMEOUT_MS = 60_000;

export interface JdbcSession {
  /** Its "before ..." line: the session's state once set up. */
  before: string;
  /** Lets it run its statements again and returns its "after ..." line. */
  after(): Promise<string>;
  /** Kills the JVM (if still running) and removes its directory. */
  stop(): void;
}

export async function startJdbcSession(o: { host: string; port: number; user: string; password: string; schema: string }): Promise<JdbcSession> {
  if (!fs.existsSync(PGJDBC)) throw new Error(`${PGJDBC} is missing: run scripts/install-deps.sh --test`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-jdbc-'));
  const child = await (async () => {
    try {
      await promisify(execFile)('javac', ['-d', dir, SOURCE]);
      const url = `jdbc:postgresql://${o.host}:${o.port}/postgres?prepareThreshold=5`;
      return spawn('java', ['-cp', `${PGJDBC}:${dir}`, 'JdbcSession', url, o.user, o.password, o.schema], { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  })();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(l);
    wake?.();
  });
  let exited = false;
  child.on('exit', () => {
    exited = true;
    wake?.();
  });
  const nextLine = async (): Promise<string> => {
    const deadline = Date.now() + LINE_TIMEOUT_MS;
    while (lines.length === 0) {
      if (exited) throw new Error(`the JDBC client exited: ${stderr.trim() || 'no output'}`);
      if (Date.now() > deadline) throw new Error(`no line from the JDBC client within ${LINE_TIMEOUT_MS} ms; stderr: ${stderr.trim()}`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
    return lines.shift()!;
  };
  const stop = () => {
    if (!exited) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const before = await nextLine();
    return {
      before,
      after: async () => {
        child.stdin.write('\n');
        return nextLine();
      },
      stop,
    };
  } catch (err) {
    stop();
    throw err;
  }
}
