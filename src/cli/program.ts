import { Command } from 'commander';

/** Builds the `virtcard` command with every subcommand and runs it; returns the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  const program = new Command('virtcard')
    .description('Smart cards for virtual machines: virtual CAC cards for QEMU guests and PC/SC')
    .showHelpAfterError();

  await program.parseAsync(argv);
  return 0;
}
