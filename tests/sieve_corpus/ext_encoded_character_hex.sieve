require ["encoded-character", "fileinto"];
if header :contains "subject" "${hex: 43 61 66 C3 A9}" { fileinto "Hex"; }
