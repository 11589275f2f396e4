import { Command } from 'commander';
import { clientCommand } from './client-command.js';
import { emulatedCommand } from './emulated-command.js';
import { hostCommand } from './host-command.js';
import { listCommand } from './list-command.js';
import { vpcdCommand } from './vpcd-command.js';

/** Builds the `virtcard` command with every subcommand and runs it; returns the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  const program = new Command('virtcard')
    .description('Smart cards for virtual machines: virtual CAC cards for QEMU guests and PC/SC')
    .showHelpAfterError();
  program.addCommand(vpcdCommand());
  program.addCommand(listCommand());
  program.addCommand(emulatedCommand());
  program.addCommand(hostCommand());
  program.addCommand(clientCommand());

  await program.parseAsync(argv);
  // A subcommand that fails without throwing (e.g. `list` when pcscd is down) sets process.exitCode.
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}
