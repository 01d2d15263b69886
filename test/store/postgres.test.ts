import { describe } from 'vitest';
import { isPostgresUrl } from '../../src/store/engine.ts';
import { requireComponent } from '../helpers/require.ts';
import { describeStoreContract } from './contract.ts';
import { postgresFixture } from './fixtures.ts';

const url = process.env.DATABASE_URL;
// Skips (and says why) on a bare machine; under WSUP_REQUIRE_ALL=1 a missing DATABASE_URL fails the file.
const run = requireComponent(
  'postgres',
  isPostgresUrl(url),
  'DATABASE_URL is not set to a postgres:// url: run `source .ci/components/20-postgres.sh` first',
);

if (run && url) describeStoreContract('PostgreSQL', postgresFixture(url));
else describe.skip('store contract on PostgreSQL (DATABASE_URL not set)', () => undefined);
