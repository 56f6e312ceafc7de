// The smallest member configuration file (as parsed YAML) that validates, for tests to build on.
export const MINIMAL_MEMBER_CONFIG = {
  cluster: 'prod',
  name: 'db1',
  etcd: { hosts: ['127.0.0.1:2379'] },
  postgresql: {
    data_dir: 'data/db1',
    listen: '127.0.0.1:5432',
    authentication: {
      superuser: { username: 'postgres', password: 'secret-one' },
      replication: { username: 'replicator', password: 'secret-two' },
    },
  },
  restapi: { listen: '127.0.0.1:8008' },
};
