require "fileinto";
if allof (address :domain :is "from" "desert.example.org",
          anyof (header :contains "subject" "anvil", header :contains "subject" "present"),
          not exists "X-Spam-Flag") {
    fileinto "Trusted";
}
if anyof (false, not true) { discard; }
