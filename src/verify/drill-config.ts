// `baton verify --config FILE`: the targets a drill is judged against, and how it reaches and hurts
// a cluster that is not local. Every key is optional; unknown keys are refused.
import { z } from 'zod';
import { describeIssues, readYamlFile } from '../config/load.js';
import { ConfigError } from '../util/errors.js';
import type { Targets } from './accounting.js';

/** "1s", "500ms", "2.5s", or a number of seconds; in milliseconds. */
const duration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v * 1000;
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)\s*(ms|s)$/.exec(v.trim()) : null;
  if (m) return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
  ctx.addIssue({ code: 'custom', message: `expected a duration such as 500ms or 5s (got ${JSON.stringify(v)})` });
  return z.NEVER;
});

const uri = z.string().regex(/^postgres(ql)?:\/\//, 'expected a postgresql:// URI');

const schema = z
  .object({
    targets: z
      .object({
        rto_planned: duration.default(1000),
        rto_unplanned: duration.default(5000),
        rpo: z.number().int().nonnegative().default(0),
      })
      .strict()
      .default({ rto_planned: 1000, rto_unplanned: 5000, rpo: 0 }),
    fault_command: z.string().min(1).optional(),
    read_write_uri: uri.optional(),
    read_only_uri: uri.optional(),
  })
  .strict();

export interface DrillConfig {
  targets: Targets;
  faultCommand: string | null;
  readWriteUri: string | null;
  readOnlyUri: string | null;
}

export function parseDrillConfig(raw: unknown, file: string): DrillConfig {
  const r = schema.safeParse(raw ?? {});
  if (!r.success) throw new ConfigError(`invalid verify configuration\n${describeIssues(file, r.error)}`, 'fix the fields named above');
  const c = r.data;
  return {
    targets: { rtoPlannedMs: c.targets.rto_planned, rtoUnplannedMs: c.targets.rto_unplanned, rpoRows: c.targets.rpo },
    faultCommand: c.fault_command ?? null,
    readWriteUri: c.read_write_uri ?? null,
    readOnlyUri: c.read_only_uri ?? null,
  };
}

export function loadDrillConfig(file: string | undefined): DrillConfig {
  return parseDrillConfig(file ? readYamlFile(file, 'verify config') : {}, file ?? '(defaults)');
}
