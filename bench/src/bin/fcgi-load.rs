//! FastCGI load generator (like h2load for HTTP); see `--help`.

use std::process::ExitCode;

use ember_fcgi_bench::load::{self, args};

fn main() -> ExitCode {
    let cfg = match args::parse(std::env::args_os().skip(1)) {
        Ok(args::Parsed::Run(cfg)) => cfg,
        Ok(args::Parsed::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fcgi-load: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let report = match load::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fcgi-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.human(&cfg));
    if cfg.json {
        println!("{}", report.json(&cfg));
    }
    if report.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
