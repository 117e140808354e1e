require "fileinto";
if header :contains ["subject", "from"] ["anvil", "coyote"] { fileinto "Either"; }
