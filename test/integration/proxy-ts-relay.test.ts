// baton proxy relaying in TypeScript (relay: js, the fallback when the native relay is not built):
// the same suite as proxy.test.ts.
import { proxySuite } from './proxy-suite.js';

proxySuite('js');
