// The member configuration file (YAML), validated strictly: unknown keys are errors.
import { z } from 'zod';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:5432')
  .refine((s) => {
    const port = Number(s.slice(s.lastIndexOf(':') + 1));
    return port >= 1 && port <= 65535;
  }, 'port must be between 1 and 65535');

export const memberNameSchema = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'letters, digits, "_", "." and "-" only, starting with a letter or digit');

const credentials = z
  .object({
    username: z.string().min(1).max(63),
    password: z.string().min(8, 'use at least 8 characters'),
  })
  .strict();

const seconds = z.number().positive();

export const dynamicConfigSchema = z
  .object({
    ttl: z.number().int().min(2, 'etcd leases shorter than 2 s are not granted').max(600).optional(),
    loop_wait: seconds.max(60).optional(),
    maximum_lag_on_failover: z.number().int().nonnegative().optional(),
    synchronous_mode: z.boolean().optional(),
    synchronous_mode_strict: z.boolean().optional(),
    max_restarts: z.number().int().nonnegative().optional(),
    restart_window: seconds.optional(),
    /** How long a leader handing over waits for open transactions to finish; 0: stop at once. */
    switchover_drain_timeout: z.number().nonnegative().max(300).optional(),
  })
  .strict();

export const tagsSchema = z
  .object({
    nofailover: z.boolean().default(false),
    noloadbalance: z.boolean().default(false),
    weight: z.number().int().min(0).max(1000).default(1),
    priority: z.number().int().min(0).max(1000).default(0),
    clonefrom: z.boolean().default(false),
  })
  .strict();

export const memberConfigSchema = z
  .object({
    cluster: memberNameSchema,
    name: memberNameSchema,
    etcd: z
      .object({
        hosts: z.array(hostPort).min(1, 'name at least one etcd endpoint'),
        request_timeout: seconds.max(30).default(2),
      })
      .strict(),
    postgresql: z
      .object({
        bin_dir: z.string().min(1).default('/usr/lib/postgresql/15/bin'),
        data_dir: z.string().min(1),
        listen: hostPort,
        connect_address: hostPort.optional(),
        os_user: z.string().min(1).default('postgres'),
        authentication: z.object({ superuser: credentials, replication: credentials }).strict(),
        parameters: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
        log_file: z.string().optional(),
        /** The member a new data directory is cloned from, sparing the leader (default: a streaming
         * member tagged clonefrom, else the leader). */
        clone_from: memberNameSchema.optional(),
      })
      .strict(),
    restapi: z
      .object({
        listen: hostPort,
        connect_address: hostPort.optional(),
        token: z.string().min(16, 'use a token of at least 16 characters').nullable().default(null),
      })
      .strict(),
    tags: tagsSchema.default({ nofailover: false, noloadbalance: false, weight: 1, priority: 0, clonefrom: false }),
    bootstrap: z.object({ dcs: dynamicConfigSchema.default({}) }).strict().default({ dcs: {} }),
  })
  .strict();

export type MemberConfigFile = z.infer<typeof memberConfigSchema>;
