// Parsers for command-line values (commander calls them; a bad value becomes a usage error naming the option).
import { InvalidArgumentError } from 'commander';
import type { MemberTags } from '../dcs/types.js';

export function parseTag(v: string, prev: Partial<MemberTags>): Partial<MemberTags> {
  const m = /^(nofailover|noloadbalance|clonefrom|weight|priority)(?:=(.*))?$/.exec(v);
  if (!m) throw new InvalidArgumentError('expected nofailover, noloadbalance, clonefrom, weight=N or priority=N');
  const [, key, value] = m;
  if (key === 'weight' || key === 'priority') {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > 1000) throw new InvalidArgumentError(`${key} needs a whole number from 0 to 1000`);
    return { ...prev, [key]: n };
  }
  if (value !== undefined && value !== 'true' && value !== 'false') throw new InvalidArgumentError(`${key} is true or false`);
  return { ...prev, [key!]: value !== 'false' };
}

export function parseBytes(v: string): number {
  const m = /^(\d+)\s*(B|kB|KB|MB|GB)?$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError('expected a size such as 1048576, 512kB or 16MB');
  const unit = (m[2] ?? 'B').toUpperCase();
  return Number(m[1]) * ({ B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 } as Record<string, number>)[unit]!;
}

export function parseSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number of seconds');
  return n;
}
