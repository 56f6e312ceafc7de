// Progress of a copy as an operator reads it: done of total, percent, rate and time left.
import { formatBytes } from '../util/lsn.js';

export interface ProgressSample {
  doneBytes: number;
  /** 0 when not known yet. */
  totalBytes: number;
  elapsedMs: number;
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** "412 MB of 1.0 GB (40%), 95 MB/s, 6 s left"; the rate is the average since the copy began. */
export function describeProgress(p: ProgressSample): string {
  const rate = p.elapsedMs > 0 ? (p.doneBytes * 1000) / p.elapsedMs : 0;
  const parts = [p.totalBytes > 0 ? `${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)} (${Math.min(100, Math.floor((100 * p.doneBytes) / p.totalBytes))}%)` : formatBytes(p.doneBytes)];
  if (rate > 0) parts.push(`${formatBytes(Math.round(rate))}/s`);
  if (rate > 0 && p.totalBytes > p.doneBytes) parts.push(`${formatDuration(((p.totalBytes - p.doneBytes) / rate) * 1000)} left`);
  return parts.join(', ');
}
