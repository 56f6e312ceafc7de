// baton proxy with its native relay (built by make build): the whole proxy suite.
import { proxySuite } from './proxy-suite.js';

proxySuite('native');
