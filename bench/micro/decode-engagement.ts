/**
 * Micro-benchmark of the enrich worker's engagement decode: 50,000 benchmark records
 * (bench/data.ts) decoded 10 times, CPU µs per record, with the hand-written check
 * (src/stages/enrich/decode-engagement.ts) and with the contract's zod decoder it stands in for
 * (`decodeRecord`). No services needed:
 *
 *   npx tsx bench/micro/decode-engagement.ts
 */
import { engagementMessage } from '../data.js';
import { decodeRecord } from '../../src/core/decode.js';
import { decodeEngagement } from '../../src/stages/enrich/decode-engagement.js';

const records = Array.from({ length: 50_000 }, (_, i) => Buffer.from(String(engagementMessage(i, 5_000, 'micro').value)));
const MAX = 256 * 1024;
const decoders = {
  'hand-written check': (b: Buffer) => decodeEngagement(b, MAX),
  'zod (decodeRecord)': (b: Buffer) => decodeRecord('engagement_event', b, MAX),
};
for (let round = 0; round < 2; round++) {
  for (const [name, decode] of Object.entries(decoders)) {
    for (const r of records) decode(r); // warm-up
    const cpu0 = process.cpuUsage();
    let ok = 0;
    for (let i = 0; i < 10; i++) for (const r of records) if (decode(r).ok) ok++;
    const cpu = process.cpuUsage(cpu0);
    console.log(`${name}: ${((cpu.user + cpu.system) / (10 * records.length)).toFixed(2)} µs per record (${ok} decoded)`);
  }
}
