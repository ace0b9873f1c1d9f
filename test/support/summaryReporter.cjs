// Mocha's spec reporter plus one closing line, "mocha: N passed, N failed[, N skipped]",
// that CI logs can be read by.
const Mocha = require('mocha');

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once('end', () => {
      const { passes, failures, pending } = runner.stats;
      const skipped = pending ? `, ${pending} skipped` : '';
      console.log(`mocha: ${passes} passed, ${failures} failed${skipped}`);
    });
  }
}

module.exports = SummaryReporter;
