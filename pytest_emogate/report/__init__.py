"""Pure rendering, no pytest: the terminal summary, the JSON report, the Markdown summary and the plot."""
