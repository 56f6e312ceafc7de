// baton proxy with its native relay making one system call per recv and send (BATON_RELAY_IO=plain,
// which the proxy's relay threads read when they start; also what they do where the kernel or a
// seccomp filter refuses io_uring): the whole proxy suite. The cluster's processes inherit it.
import { proxySuite } from './proxy-suite.js';

process.env.BATON_RELAY_IO = 'plain';
proxySuite('native');
