import { schemaCheck } from './schemas.js';
import { installSchemaCheck } from './verify-core.js';

/**
 * The record verifier (verify-core.ts) with the record schemas installed: what every part of idns that
 * verifies records imports. verify-core.ts alone reads the usual records without zod and throws
 * SchemaNeeded for the rest; only a thread that checks copied records uses it that way.
 */
installSchemaCheck(schemaCheck);

export {
  MAX_FUTURE_IAT,
  MAX_NO_CUT_PROOFS,
  namesBetween,
  noCutOf,
  verifyContentRecord,
  verifyDelegation,
  verifyDenial,
  verifyHandleRecord,
  verifyRecord,
  verifyZoneRecord,
  type ContentRecord,
  type VerifiedZone,
  type VerifyOptions,
} from './verify-core.js';
