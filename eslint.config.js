// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', '.wsup/', '.build/', 'dist/', 'visualizer/dist/', 'test-output/', '.dependency-cruiser.cjs', 'eslint.config.js', 'bin/*.js', 'scripts/*.js', 'test/bench/worker-boot.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // machines/ are pure statecharts: no Node modules, no providers, no store, no timers of their own.
    files: ['machines/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['node:*'], message: 'machines/ must stay pure: no Node modules.' },
          { group: ['**/src/**', '../src/*'], message: 'machines/ must not import src/ (providers, store, supervisor).' },
          { group: ['fs', 'path', 'child_process', 'net', 'http', 'os', 'crypto', 'events', 'timers'], message: 'machines/ must stay pure: no Node modules.' },
        ],
      }],
      'no-restricted-globals': ['error',
        { name: 'setTimeout', message: 'machines/ have no timers of their own: use delayed transitions.' },
        { name: 'setInterval', message: 'machines/ have no timers of their own.' },
        { name: 'process', message: 'machines/ must stay pure.' }],
      'no-restricted-properties': ['error', { object: 'Date', property: 'now', message: 'machines/ read time from events, never the wall clock.' }],
    },
  },
  {
    files: ['test/**/*.ts', '**/*.test.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
);
