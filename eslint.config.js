// ESLint flat config: typescript-eslint's type-aware rules over every TypeScript file the project's tsconfig covers
// (src, test, bench, examples, scripts, vitest.config.ts). Formatting is Prettier's job (eslint-config-prettier last).
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/** Names of the legacy API that src/compat exposes on purpose in snake_case (calls and wire-format fields). */
const LEGACY_SNAKE_CASE = [
  // calls
  'spawn_agent',
  'delegate_task_to_agent',
  'get_agent_status',
  'get_task_status',
  'shutdown_agent',
  'wait_for_task',
  // fields of the legacy task, status and result shapes
  'max_retries',
  'tenant_id',
  'task_id',
  'agent_id',
  'active_tasks',
  'completed_tasks',
  'failed_tasks',
  'created_at',
  'updated_at',
];

/** The project's naming rules; `extra` entries come first so they can carve out a targeted exception. */
function namingConvention(...extra) {
  return [
    'error',
    ...extra,
    { selector: 'default', format: ['camelCase'], leadingUnderscore: 'allow' },
    { selector: 'import', format: ['camelCase', 'PascalCase'] },
    // Module constants may be UPPER_CASE; a const holding a class or a frozen table of them may be PascalCase.
    {
      selector: 'variable',
      modifiers: ['const'],
      format: ['camelCase', 'UPPER_CASE', 'PascalCase'],
      leadingUnderscore: 'allow',
    },
    { selector: 'typeLike', format: ['PascalCase'] },
    { selector: 'enumMember', format: ['PascalCase', 'UPPER_CASE'] },
    // Static readonly class members are constants too; every other class member (`#private` ones too) is camelCase.
    { selector: 'classProperty', modifiers: ['static', 'readonly'], format: ['camelCase', 'UPPER_CASE'] },
    // Keys of plain data may mirror what they name: error codes and agent states (UPPER_CASE), environment
    // variables, classes or enums of another library (PascalCase: `SpanKind`, `Worker`).
    {
      selector: ['objectLiteralProperty', 'typeProperty'],
      format: ['camelCase', 'UPPER_CASE', 'PascalCase'],
      leadingUnderscore: 'allow',
    },
    // Names that need quotes are data (HTTP headers, metric labels, Redis fields), not identifiers.
    {
      selector: ['objectLiteralProperty', 'typeProperty', 'objectLiteralMethod', 'classProperty'],
      modifiers: ['requiresQuotes'],
      format: null,
    },
  ];
}

/** The legacy snake_case names, allowed where the legacy API is implemented, called or faked, and nowhere else. */
const legacyNames = {
  selector: ['method', 'typeProperty', 'objectLiteralProperty'],
  filter: { regex: `^(${LEGACY_SNAKE_CASE.join('|')})$`, match: true },
  format: null,
};

export default defineConfig(
  {
    ignores: [
      // Ambient declarations that let the README's snippets typecheck; one uses `implements import('…').Agent`,
      // which TypeScript accepts and typescript-estree cannot parse.
      'test/docs/context/migration/context.d.ts',
      'node_modules/',
      'dist/',
      'coverage/',
      'docs/api/',
      'bench/results/',
      'bench/.peers/',
      '.scratch/',
    ],
  },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['eslint.config.js'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // A switch over a union without a `default` must name every member. A `default` is a decision ("every other code
      // is a 500", "other kinds are not sticky") and counts as exhaustive.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      // A `let` read by a closure before its one assignment (a shutdown handler installed early) cannot be a `const`.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // `_name` marks a parameter or a destructured key that is there on purpose (to keep a position, to omit a key).
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // Passing an abort signal's `reason` (typed `any`) on as the rejection is right: the caller aborted with it.
      '@typescript-eslint/prefer-promise-reject-errors': [
        'error',
        { allowThrowingAny: true, allowThrowingUnknown: true },
      ],
      '@typescript-eslint/naming-convention': namingConvention(),
      // An `async` function without `await` is how this code base implements a promise-returning interface
      // (agents' `execute`, legacy calls, fakes): a throw becomes a rejection. Dropping `async` to please this rule
      // would turn those rejections into synchronous throws (about 120 hits, none a bug).
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // The compat adapter's legacy API and the code that calls or fakes it (tests, bench, examples).
    files: ['src/compat/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts', 'examples/**/*.ts'],
    rules: { '@typescript-eslint/naming-convention': namingConvention(legacyNames) },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // vitest's asymmetric matchers (`expect.any(Error)`, `expect.objectContaining(…)`, `expect.stringMatching(…)`)
      // are typed `any`, so every use inside an expected object is an "unsafe assignment".
      '@typescript-eslint/no-unsafe-assignment': 'off',
    },
  },
  {
    // Type-level tests: values are declared for the compiler to look at their types, never to be used.
    files: ['test/**/*.types.ts'],
    rules: { '@typescript-eslint/no-unused-vars': 'off' },
  },
  {
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  prettier,
);
