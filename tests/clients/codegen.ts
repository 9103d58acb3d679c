// GraphQL Code Generator: TypeScript types and typed documents for the operations in
// operations/, checked against the committed schema.graphql.
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: '../../schema.graphql',
  documents: ['operations/*.graphql'],
  generates: {
    'src/generated/graphql.ts': {
      plugins: ['typescript-operations', 'typed-document-node'],
      config: {
        strictScalars: true,
        scalars: { DateTime: 'string', UUID: 'string', JSON: 'unknown' },
        enumsAsTypes: true,
        nonOptionalTypename: true,
        useTypeImports: true,
      },
    },
  },
};

export default config;
