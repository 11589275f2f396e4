import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logger, setLogLevel } from '../../src/log/logger.js';

test('setLogLevel reaches existing children', () => {
  const child = logger.child({ component: 'test' });
  const grandchild = child.child({ peer: 'x' });
  assert.equal(child.isLevelEnabled('debug'), false);

  setLogLevel('debug');
  try {
    assert.equal(child.isLevelEnabled('debug'), true);
    assert.equal(grandchild.isLevelEnabled('debug'), true);
  } finally {
    setLogLevel('info');
  }
  assert.equal(child.isLevelEnabled('debug'), false);
});
