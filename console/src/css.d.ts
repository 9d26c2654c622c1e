// Stylesheets are bundled by esbuild from their imports.
declare module "*.css";
