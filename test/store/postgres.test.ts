import { describe } from 'vitest';
import { postgresUrl } from '../helpers/require.ts';
import { describeStoreContract } from './contract.ts';
import { postgresFixture } from './fixtures.ts';

// Skips (and says why) on a bare machine; under WSUP_REQUIRE_ALL=1 a missing PostgreSQL fails the file.
const url = postgresUrl();
if (url) describeStoreContract('PostgreSQL', postgresFixture(url));
else describe.skip('store contract on PostgreSQL', () => undefined);
