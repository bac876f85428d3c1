"""The command line: `soar validate`, `soar alert normalize`, `soar lab`, ..."""
