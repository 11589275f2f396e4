import { Command } from 'commander';
import { vpcdCommand } from './vpcd-command.js';

/** Builds the `virtcard` command with every subcommand and runs it; returns the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  const program = new Command('virtcard')
    .description('Smart cards for virtual machines: virtual CAC cards for QEMU guests and PC/SC')
    .showHelpAfterError();
  program.addCommand(vpcdCommand());

  await program.parseAsync(argv);
  return 0;
}
