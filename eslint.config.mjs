import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const noImport = (names, why) => ({
  'no-restricted-imports': ['error', { paths: names.map((name) => ({ name, message: why })) }],
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench-results/', 'build/', '.venv/', 'samples/**/*.py'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
  { files: ['**/*.{js,mjs,cjs}'], ...tseslint.configs.disableTypeChecked },
  {
    files: ['**/*.{js,cjs}'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        console: 'readonly',
        __dirname: 'readonly',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
  // Three runtimes, one rule each.
  {
    files: ['native-bridge/**/*.ts'],
    rules: noImport(['vscode'], 'native-bridge never imports vscode'),
  },
  {
    files: ['extension/**/*.ts'],
    rules: noImport(
      ['onnxruntime-node'],
      'the extension reaches onnxruntime only through the bridge',
    ),
  },
  {
    files: ['webview/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['vscode', 'node:*', 'fs', 'path', 'child_process', 'onnxruntime-node'],
              message: 'the webview runs in a browser sandbox',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
