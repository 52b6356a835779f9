// The one npm library the portal uses, bundled by scripts/build-portal.sh
// into dist/vendor/jssip.js as an ES module (JsSIP ships CommonJS only).
export { default } from 'jssip';
